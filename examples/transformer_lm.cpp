// transformer_lm: a small decoder-only Transformer (pre-LayerNorm blocks of causal
// nn::MultiHeadDotProductAttention and a gelu MLP, as Flax's examples/lm1b builds them) trained
// for a few steps on the fortunes text that train_charlm uses, then sampled one character at a
// time with the attention `cache` (decode = true), next to the same sampling by re-running the
// full causal forward on the whole context, to show that both give the same text and what the
// cache saves.
//
//   build/bin/transformer_lm --steps 200
//   build/bin/transformer_lm --help
//
// Data as in train_charlm: every 20th fortune held out, byte tokens over the bytes that occur,
// random windows of seq_len + 1 bytes, next-byte cross-entropy at every position. Optimizer:
// clip_by_global_norm(1) then Adam with a linear warmup and cosine decay.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/data.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/losses.hpp"
#include "nn/nn.hpp"
#include "optax/optax.hpp"

using namespace flaxpp;

namespace {

struct MlpBlock : nn::Module<MlpBlock> {
  int64_t mlp_dim = 0;
  Array operator()(nn::Scope& s, const Array& x) const {
    Array h = nn::gelu(s(nn::Dense{.features = mlp_dim}, x));
    return s(nn::Dense{.features = x.shape().back()}, h);
  }
};

// Pre-LN: x + attn(LN(x)), then + mlp(LN(x)). With decode, the attention's cache masks.
struct DecoderBlock : nn::Module<DecoderBlock> {
  int64_t num_heads = 0, mlp_dim = 0;
  bool decode = false;
  Array operator()(nn::Scope& s, const Array& x, const std::optional<Array>& mask) const {
    Array h = s(nn::LayerNorm{}, x);
    h = s(nn::MultiHeadDotProductAttention{.num_heads = num_heads, .decode = decode}, h,
          nn::AttentionCall{.mask = mask});
    Array y = x + h;
    return y + s(MlpBlock{.mlp_dim = mlp_dim}, s(nn::LayerNorm{}, y));
  }
};

struct TransformerLM : nn::Module<TransformerLM> {
  int64_t vocab_size = 0, max_len = 0, emb_dim = 64, num_heads = 4, num_layers = 2, mlp_dim = 256;
  bool decode = false;

  // tokens int32 (B, L) -> logits (B, L, vocab_size). With decode (after an init on the full
  // length), L is 1 and the position comes from cache/position.
  Array operator()(nn::Scope& s, const Array& tokens) const {
    Array x = s.call("embed", nn::Embed{.num_embeddings = vocab_size, .features = emb_dim}, tokens);
    Array pos = s.param("pos_embedding", nn::initializers::normal(0.02), {max_len, emb_dim});
    int64_t L = tokens.shape()[1], start = 0;
    if (decode) {
      bool cached = s.has_variable("cache", "position");
      Array p = s.variable("cache", "position", [] { return jnp::zeros({}, DType::int32); });
      if (cached) {
        start = p.item<int32_t>();
        s.put_variable("cache", "position", p + Array(int32_t{1}));
      }
    }
    x = x + jnp::slice(pos, 0, start, start + L);
    std::optional<Array> mask;
    if (!decode) mask = nn::make_causal_mask(tokens);
    for (int64_t i = 0; i < num_layers; ++i)
      x = s.call("blocks", static_cast<size_t>(i),
                 DecoderBlock{.num_heads = num_heads, .mlp_dim = mlp_dim, .decode = decode}, x,
                 mask);
    x = s.call("ln_f", nn::LayerNorm{}, x);
    return s.call("logits", nn::Dense{.features = vocab_size}, x);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Array windows_at(const std::vector<int32_t>& ids, const std::vector<int64_t>& starts, int64_t len) {
  Array out = Array::empty({static_cast<int64_t>(starts.size()), len + 1}, DType::int32);
  for (size_t b = 0; b < starts.size(); ++b)
    std::copy_n(ids.data() + starts[b], len + 1, out.mutable_data<int32_t>() + b * (len + 1));
  return out;
}

int32_t argmax_last(const Array& logits) {  // logits (1, n, V): argmax at the last position
  int64_t n = logits.shape()[1], V = logits.shape()[2];
  const float* p = logits.data<float>() + (n - 1) * V;
  return static_cast<int32_t>(std::max_element(p, p + V) - p);
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = "/usr/share/games/fortunes", prompt = "The meaning of life is";
  int64_t steps = 200, batch = 16, seq_len = 64, dim = 64, heads = 4, layers = 2, sample_len = 120;
  double lr = 3e-3;
  int64_t seed = 0;
  CLI::App app{"Trains a small Transformer LM on fortunes, then samples with the decode cache."};
  app.add_option("--data-dir", data_dir, "fortune files (Debian package `fortunes`)")
      ->capture_default_str();
  app.add_option("--steps", steps, "training steps")->capture_default_str();
  app.add_option("--batch", batch, "windows per batch")->capture_default_str();
  app.add_option("--seq-len", seq_len, "characters per window = max_len")->capture_default_str();
  app.add_option("--dim", dim, "embedding width")->capture_default_str();
  app.add_option("--heads", heads, "attention heads (must divide --dim)")->capture_default_str();
  app.add_option("--layers", layers, "decoder blocks")->capture_default_str();
  app.add_option("--lr", lr, "peak learning rate")->capture_default_str();
  app.add_option("--seed", seed, "PRNG seed")->capture_default_str();
  app.add_option("--sample-len", sample_len, "characters to sample greedily")
      ->capture_default_str();
  app.add_option("--sample-prompt", prompt, "text the sample continues")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (steps < 0 || batch <= 0 || seq_len < 2 || dim <= 0 || heads <= 0 || layers <= 0) {
    std::cerr << "transformer_lm: --steps must be >= 0, --seq-len >= 2, and --batch, --dim, "
                 "--heads, --layers positive\n";
    return 2;
  }

  try {
    auto corpus = examples::load_fortunes(data_dir, 20);
    std::vector<int32_t> id_of(256, -1);
    std::vector<uint8_t> byte_of;
    for (unsigned char c : corpus.train + corpus.val)
      if (id_of[c] < 0) id_of[c] = 0;
    for (int b = 0; b < 256; ++b)
      if (id_of[b] >= 0)
        id_of[b] = static_cast<int32_t>(byte_of.size()), byte_of.push_back(static_cast<uint8_t>(b));
    auto encode = [&](const std::string& t) {
      std::vector<int32_t> r;
      for (unsigned char c : t)
        if (id_of[c] >= 0) r.push_back(id_of[c]);
      return r;
    };
    std::vector<int32_t> train = encode(corpus.train), val = encode(corpus.val);
    const int64_t V = static_cast<int64_t>(byte_of.size());

    TransformerLM model{.vocab_size = V,
                        .max_len = seq_len,
                        .emb_dim = dim,
                        .num_heads = heads,
                        .num_layers = layers,
                        .mlp_dim = 4 * dim};
    auto keys = random::split(random::PRNGKey(seed), 2);
    Tree params = model.init(keys[0], jnp::zeros({1, seq_len}, DType::int32))["params"];
    std::fprintf(
        stderr, "data: %zu training bytes, %zu held out, vocabulary %lld; model: %lld parameters\n",
        train.size(), val.size(), static_cast<long long>(V),
        static_cast<long long>(param_count(params)));

    auto loss_fn = [&](const Tree& p, const Array& w) {
      Array logits = model.apply(Tree{{"params", p}}, jnp::slice(w, 1, 0, seq_len));
      return jnp::mean(optax::softmax_cross_entropy_with_integer_labels(
          logits, jnp::slice(w, 1, 1, seq_len + 1)));
    };
    auto tx = optax::chain(
        {optax::clip_by_global_norm(1.0),
         optax::adam(optax::warmup_cosine_decay_schedule(0, lr, std::max<int64_t>(1, steps / 10),
                                                         std::max<int64_t>(2, steps), lr * 0.1))});
    Tree opt_state = tx.init(params);
    auto val_loss = [&](const Tree& p) {  // 32 evenly spaced held-out windows
      std::vector<int64_t> starts;
      int64_t span = static_cast<int64_t>(val.size()) - seq_len - 1;
      for (int64_t i = 0; i < 32; ++i) starts.push_back(i * span / 32);
      return loss_fn(p, windows_at(val, starts, seq_len)).item<float>() / std::log(2.0);
    };
    std::fprintf(stderr, "step 0: val %.3f bits/char\n", val_loss(params));
    auto t_train = std::chrono::steady_clock::now();
    for (int64_t step = 1; step <= steps; ++step) {
      Array starts =
          random::randint(random::fold_in(keys[1], static_cast<uint32_t>(step)), {batch}, 0,
                          static_cast<int32_t>(train.size()) - static_cast<int32_t>(seq_len) - 1);
      std::vector<int64_t> st(starts.data<int32_t>(), starts.data<int32_t>() + batch);
      auto [loss, grads] = value_and_grad(loss_fn)(params, windows_at(train, st, seq_len));
      auto [updates, next_state] = tx.update(grads, opt_state, params);
      params = optax::apply_updates(params, updates);
      opt_state = next_state;
      if (step % 50 == 0 || step == steps)
        std::fprintf(stderr, "step %lld: train %.3f bits/char, val %.3f bits/char, %.1f s\n",
                     static_cast<long long>(step), loss.item<float>() / std::log(2.0),
                     val_loss(params), seconds_since(t_train));
    }

    // ---- greedy sampling: full forward on the context vs the decode cache ----
    std::vector<int32_t> ctx = encode(prompt);
    if (ctx.empty()) ctx.push_back(0);
    const int64_t total = std::min<int64_t>(seq_len, static_cast<int64_t>(ctx.size()) + sample_len);
    Tree vars{{"params", params}};
    std::vector<int32_t> full_ids = ctx;
    auto t_full = std::chrono::steady_clock::now();
    while (static_cast<int64_t>(full_ids.size()) < total) {
      Array in = Array::from({1, static_cast<int64_t>(full_ids.size())}, full_ids);
      full_ids.push_back(argmax_last(model.apply(vars, in)));
    }
    double full_s = seconds_since(t_full);

    TransformerLM dec = model;
    dec.decode = true;
    Tree cache = dec.init(keys[0], jnp::zeros({1, seq_len}, DType::int32))["cache"];
    Tree state{{"params", params}, {"cache", cache}};
    std::vector<int32_t> dec_ids = ctx;
    auto t_dec = std::chrono::steady_clock::now();
    int32_t next = 0;
    for (int64_t t = 0; t + 1 < total; ++t) {  // the prompt token by token, then the samples
      int32_t tok = t < static_cast<int64_t>(ctx.size()) ? ctx[static_cast<size_t>(t)] : next;
      auto [logits, updates] =
          dec.apply(state, Array::from({1, 1}, std::vector<int32_t>{tok}), nn::Mutable{"cache"});
      state = state.set("cache", updates["cache"]);
      next = argmax_last(logits);
      if (t + 1 >= static_cast<int64_t>(ctx.size())) dec_ids.push_back(next);
    }
    double dec_s = seconds_since(t_dec);
    auto text = [&](const std::vector<int32_t>& ids) {
      std::string r;
      for (int32_t i : ids) r += static_cast<char>(byte_of[static_cast<size_t>(i)]);
      return r;
    };
    int64_t generated = total - static_cast<int64_t>(ctx.size());
    std::fprintf(
        stderr,
        "greedy sample of %lld characters: full forward %.1f ms/char, decode cache %.1f ms/char "
        "(%lld positions fed); texts %s\n",
        static_cast<long long>(generated), 1e3 * full_s / static_cast<double>(generated),
        1e3 * dec_s / static_cast<double>(total - 1), static_cast<long long>(total - 1),
        full_ids == dec_ids ? "identical" : "DIFFER");
    std::cout << text(dec_ids) << std::endl;
    return full_ids == dec_ids ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "transformer_lm: " << e.what() << "\n";
    return 1;
  }
}
