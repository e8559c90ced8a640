// Tests for cli/gmlp_cmds.cpp: `flaxpp init gmlp` / `flaxpp apply gmlp` round trips through the
// built binary (FLAXPP_BINARY_DIR/bin/flaxpp), checked against the same computation in-process,
// and their error messages.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <sys/wait.h>

#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "core/tree.hpp"
#include "models/gmlp.hpp"
#include "serialization/serialization.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;
namespace rnd = flaxpp::random;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A scratch directory for this process, removed at exit.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("flaxpp_cli_test_" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator()(const std::string& name) const { return (dir / name).string(); }
};
const Scratch& scratch() {
  static Scratch s;
  return s;
}

Run flaxpp_cli(const std::string& args) {
  fs::path exe = fs::path(FLAXPP_BINARY_DIR) / "bin" / "flaxpp";
  REQUIRE_MESSAGE(fs::exists(exe),
                  "the CLI is not built: build the flaxpp_cli target (" << exe << ")");
  std::string out = scratch()("stdout.txt"), err = scratch()("stderr.txt");
  int rc = std::system((exe.string() + " " + args + " > " + out + " 2> " + err).c_str());
  return Run{WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_file(out), read_file(err)};
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string tokens_json(const Array& t) { return to_json(Tree(t)); }

std::vector<std::string> paths_of(const Tree& t) {
  std::vector<std::string> r;
  for (auto& [p, a] : flatten_dict(t)) r.push_back(p);
  return r;
}

}  // namespace

TEST_CASE("init gmlp writes model.init's variables, in insertion order, as .json and .msgpack") {
  models::gMLP model{.num_tokens = 64, .dim = 16, .depth = 2, .seq_len = 8};
  Tree want = model.init(rnd::PRNGKey(3), jnp::zeros({1, 8}, DType::int32));
  for (std::string ext : {".json", ".msgpack"}) {
    CAPTURE(ext);
    std::string file = scratch()("p" + ext);
    Run r = flaxpp_cli("init gmlp --num-tokens 64 --dim 16 --depth 2 --seq-len 8 --seed 3 --out " +
                       file);
    CHECK(r.status == 0);
    CHECK(r.out.find("gMLP(num_tokens=64, dim=16, depth=2, ff_mult=4, seq_len=8, causal): 7,824 "
                     "parameters") != std::string::npos);
    Tree got = load(file);
    CHECK(tree_equal(got, want));            // bit for bit
    CHECK(paths_of(got) == paths_of(want));  // Flax's insertion order
    CHECK(param_count(got) == 7824);
  }
  // The 2021 profile gives other values with the same layout.
  std::string f21 = scratch()("p21.json");
  CHECK(
      flaxpp_cli(
          "init gmlp --num-tokens 64 --dim 16 --depth 2 --seq-len 8 --seed 3 --compat 2021 --out " +
          f21)
          .status == 0);
  Tree want21 = model.init(rnd::PRNGKey(3), jnp::zeros({1, 8}, DType::int32), nn::Compat::v2021);
  CHECK(tree_equal(load(f21), want21));
  CHECK_FALSE(tree_equal(want21, want));
}

TEST_CASE("apply gmlp: logits, loss and grads equal the in-process computation") {
  struct Case {
    std::string flags;
    models::gMLP model;
    Shape shape;
  };
  std::vector<Case> cases = {
      {"--num-tokens 64 --dim 16 --depth 2 --seq-len 8",
       {.num_tokens = 64, .dim = 16, .depth = 2, .seq_len = 8},
       {3, 8}},
      {"--num-tokens 64 --dim 16 --depth 2 --seq-len 8",
       {.num_tokens = 64, .dim = 16, .depth = 2, .seq_len = 8},
       {2, 5}},
      {"--num-tokens 64 --dim 16 --depth 2 --seq-len 8 --no-causal",
       {.num_tokens = 64, .dim = 16, .depth = 2, .seq_len = 8, .causal = false},
       {2, 8}},
      {"--num-tokens 64 --dim 16 --depth 2 --attn-dim 8",
       {.num_tokens = 64, .dim = 16, .depth = 2, .attn_dim = 8},
       {10}},
      {"--num-tokens 64 --dim 16 --depth 1 --ff-mult 2",
       {.num_tokens = 64, .dim = 16, .depth = 1, .ff_mult = 2},
       {2, 4}},
  };
  int i = 0;
  for (auto& [flags, model, shape] : cases) {
    CAPTURE(flags);
    CAPTURE(to_string(shape));
    std::string params = scratch()("params" + std::to_string(i) + ".msgpack");
    std::string tokens = scratch()("tokens" + std::to_string(i) + ".json");
    std::string out = scratch()("out" + std::to_string(i) + ".json");
    ++i;
    REQUIRE(flaxpp_cli("init gmlp " + flags + " --seed 1 --out " + params).status == 0);
    Array t = rnd::randint(rnd::PRNGKey(9), shape, 0, 64);
    write_text(tokens, tokens_json(t));
    Tree variables = load(params);

    // Model flags are optional for apply (read off the shapes); causality is a flag.
    std::string causal_flag = model.causal ? "" : " --no-causal";
    Run r = flaxpp_cli("apply gmlp --params " + params + " --tokens " + tokens + " --out " + out +
                       causal_flag);
    REQUIRE(r.status == 0);
    Tree got = load(out);
    CHECK(got.keys() == std::vector<std::string>{"logits"});
    CHECK(tree_equal(got["logits"], Tree(model.apply(variables, t))));

    r = flaxpp_cli("apply gmlp " + flags + " --params " + params + " --tokens " + tokens +
                   " --out " + out + " --grad");
    REQUIRE(r.status == 0);
    got = load(out);
    CHECK(got.keys() == std::vector<std::string>{"logits", "loss", "grads"});
    auto loss_fn = [&](const Tree& p) {
      return models::next_token_loss(model.apply(Tree{{"params", p}}, t), t);
    };
    auto [loss, grads] = value_and_grad(loss_fn)(variables["params"]);
    CHECK(got["loss"].array().item<float>() == loss.item<float>());
    CHECK(tree_equal(got["grads"], Tree{{"params", grads}}));
    CHECK(paths_of(got["grads"]["params"]) == paths_of(variables["params"]));  // the params' layout
  }
}

TEST_CASE("init / apply gmlp: errors say what is wrong") {
  std::string params = scratch()("e.json"), tokens = scratch()("et.json"),
              out = scratch()("eo.json");
  REQUIRE(flaxpp_cli("init gmlp --num-tokens 16 --dim 8 --depth 1 --seq-len 4 --out " + params)
              .status == 0);
  auto apply_err = [&](const std::string& tokens_text, const std::string& extra = "") {
    write_text(tokens, tokens_text);
    Run r = flaxpp_cli("apply gmlp --params " + params + " --tokens " + tokens + " --out " + out +
                       " " + extra);
    CHECK(r.status != 0);
    return r.err;
  };
  CHECK(apply_err("[[[1, 2, 3, 4]]]") ==
        "flaxpp apply: error: " + tokens +
            ": tokens must have shape (L,) or (B, L) with L >= 1, got (1,1,4)\n");
  CHECK(apply_err("[[1.5, 2, 3, 4]]") ==
        "flaxpp apply: error: " + tokens + ": tokens must be integers, got float32 (1,4)\n");
  CHECK(apply_err("[[1, 2, 16, 4]]") ==
        "flaxpp apply: error: " + tokens + ": token id 16 at flat position 2 is outside [0, 16)\n");
  CHECK(apply_err("[1, 2, 3, 4, 5]") ==
        "flaxpp apply: error: " + tokens +
            " (5,): <root> (gMLP): sequence length 5 exceeds seq_len 4 (a causal model accepts any "
            "length <= seq_len)\n");
  CHECK(apply_err("[1, 2, 3]", "--no-causal") ==
        "flaxpp apply: error: " + tokens +
            " (3,): <root> (gMLP): a non-causal model needs sequence length == seq_len 4, got 3\n");
  CHECK(apply_err("[1]", "--grad") ==
        "flaxpp apply: error: " + tokens +
            " (1,): --grad needs at least 2 tokens per sequence (next-token loss)\n");
  CHECK(apply_err("[1, 2, 3", "").find("from_json: line 1") != std::string::npos);
  CHECK(apply_err("[1, 2]", "--dim 12") == "flaxpp apply: error: --dim 12 does not match " +
                                               params +
                                               ": params/to_embed/embedding (16,8) gives 8\n");
  CHECK(apply_err("[1, 2]", "--attn-dim 4") == "flaxpp apply: error: --attn-dim 4 does not match " +
                                                   params +
                                                   ": no attn entry (attention off) gives 0\n");

  write_text(tokens, "[1, 2]");
  Run r = flaxpp_cli("apply gmlp --params " + scratch()("missing.json") + " --tokens " + tokens +
                     " --out " + out);
  CHECK(r.status != 0);
  CHECK(r.err.find("--params: File does not exist: " + scratch()("missing.json")) !=
        std::string::npos);
  r = flaxpp_cli("apply gmlp --params " + params + " --tokens " + tokens + " --out " +
                 scratch()("o.txt"));
  CHECK(r.status != 0);
  CHECK(r.err == "flaxpp apply: error: " + scratch()("o.txt") +
                     ": unknown checkpoint format '.txt' (use .json, .msgpack or .safetensors)\n");
  // A file that is not in Flax's layout, and one with an extra entry.
  std::string bare = scratch()("bare.json");
  write_text(bare, "{\"kernel\": [[1.0]]}");
  r = flaxpp_cli("apply gmlp --params " + bare + " --tokens " + tokens + " --out " + out);
  CHECK(r.err == "flaxpp apply: error: " + bare + ": expected Flax's layout {\"params\": {...}}\n");
  std::string extra = scratch()("extra.json");
  save(extra, load(params).set("params/layers_0/extra", jnp::zeros({3})));
  r = flaxpp_cli("apply gmlp --params " + extra + " --tokens " + tokens + " --out " + out);
  CHECK(r.err == "flaxpp apply: error: " + extra +
                     ": 1,055 parameters, but gMLP(num_tokens=16, dim=8, depth=1, ff_mult=4, "
                     "seq_len=4, causal) has "
                     "1,052: params/layers_0/extra (3,) is not used by the model\n");

  r = flaxpp_cli("init gmlp --num-tokens 16 --dim 8 --out " + out);
  CHECK(r.status != 0);
  CHECK(r.err.find("--depth is required") != std::string::npos);
  r = flaxpp_cli("init gmlp --num-tokens 16 --dim 3 --depth 1 --ff-mult 1 --out " + out);
  CHECK(r.err ==
        "flaxpp init: error: --dim * --ff-mult must be even (the spatial gating unit splits it in "
        "two), got 3 * 1\n");
  r = flaxpp_cli("init gmlp --num-tokens 16 --dim 8 --depth 1 --out " + scratch()("nodir/p.json"));
  CHECK(r.status != 0);
  CHECK(r.err.find("save: " + scratch()("nodir/p.json")) != std::string::npos);
}
