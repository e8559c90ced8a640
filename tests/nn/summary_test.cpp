// Module::tabulate against what Flax's nn.tabulate prints for the same models (flax/linen/
// summary.py: columns path/module/inputs/outputs/params, rows in call order, a module's own
// params as "name: dtype[shape]" then "count (bytes)", a right-aligned Total, the caption
// "Total Parameters: N (X)"). The expected tables were rendered with Flax's _render_table code
// and rich 13.3; Flax's string additionally starts with a newline and pads the title and caption
// lines with spaces to the table width, which flaxpp leaves out.
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include "core/ops.hpp"
#include "core/random.hpp"
#include "nn/nn.hpp"

using namespace flaxpp;
namespace rnd = flaxpp::random;

namespace {

bool has_line(const std::string& table, const std::string& line) {
  std::stringstream ss(table);
  for (std::string l; std::getline(ss, l);)
    if (l == line) return true;
  return false;
}

int count_lines_starting(const std::string& table, const std::string& prefix) {
  std::stringstream ss(table);
  int n = 0;
  for (std::string l; std::getline(ss, l);) n += l.rfind(prefix, 0) == 0;
  return n;
}

struct Foo : nn::Module<Foo> {  // the example in Flax's nn.tabulate docstring
  Array operator()(nn::Scope& s, const Array& x) const {
    Array h = s(nn::Dense{.features = 4}, x);
    return s(nn::Dense{.features = 2}, h);
  }
};

struct MLP : nn::Module<MLP> {  // Flax's README example
  std::vector<int64_t> features;
  Array operator()(nn::Scope& s, Array x) const {
    for (size_t i = 0; i + 1 < features.size(); ++i)
      x = nn::relu(s(nn::Dense{.features = features[i]}, x));
    return s(nn::Dense{.features = features.back()}, x);
  }
};

}  // namespace

TEST_CASE("tabulate: Flax's docstring example, Dense(4) then Dense(2) on ones((16, 9))") {
  // google/flax flax/linen/summary.py (tabulate docstring, before the flops columns were added).
  const std::string want = R"(                                Foo Summary
┏━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
┃ path    ┃ module ┃ inputs        ┃ outputs       ┃ params               ┃
┡━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
│         │ Foo    │ float32[16,9] │ float32[16,2] │                      │
├─────────┼────────┼───────────────┼───────────────┼──────────────────────┤
│ Dense_0 │ Dense  │ float32[16,9] │ float32[16,4] │ bias: float32[4]     │
│         │        │               │               │ kernel: float32[9,4] │
│         │        │               │               │                      │
│         │        │               │               │ 40 (160 B)           │
├─────────┼────────┼───────────────┼───────────────┼──────────────────────┤
│ Dense_1 │ Dense  │ float32[16,4] │ float32[16,2] │ bias: float32[2]     │
│         │        │               │               │ kernel: float32[4,2] │
│         │        │               │               │                      │
│         │        │               │               │ 10 (40 B)            │
├─────────┼────────┼───────────────┼───────────────┼──────────────────────┤
│         │        │               │         Total │ 50 (200 B)           │
└─────────┴────────┴───────────────┴───────────────┴──────────────────────┘

                       Total Parameters: 50 (200 B)
)";
  CHECK(Foo{}.tabulate(rnd::PRNGKey(0), jnp::ones({16, 9})) == want);
}

TEST_CASE("tabulate: the README MLP([12, 8, 4]) on ones((32, 10)), KB units") {
  const std::string want = R"(                                  MLP Summary
┏━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ path    ┃ module ┃ inputs         ┃ outputs        ┃ params                 ┃
┡━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━┩
│         │ MLP    │ float32[32,10] │ float32[32,4]  │                        │
├─────────┼────────┼────────────────┼────────────────┼────────────────────────┤
│ Dense_0 │ Dense  │ float32[32,10] │ float32[32,12] │ bias: float32[12]      │
│         │        │                │                │ kernel: float32[10,12] │
│         │        │                │                │                        │
│         │        │                │                │ 132 (528 B)            │
├─────────┼────────┼────────────────┼────────────────┼────────────────────────┤
│ Dense_1 │ Dense  │ float32[32,12] │ float32[32,8]  │ bias: float32[8]       │
│         │        │                │                │ kernel: float32[12,8]  │
│         │        │                │                │                        │
│         │        │                │                │ 104 (416 B)            │
├─────────┼────────┼────────────────┼────────────────┼────────────────────────┤
│ Dense_2 │ Dense  │ float32[32,8]  │ float32[32,4]  │ bias: float32[4]       │
│         │        │                │                │ kernel: float32[8,4]   │
│         │        │                │                │                        │
│         │        │                │                │ 36 (144 B)             │
├─────────┼────────┼────────────────┼────────────────┼────────────────────────┤
│         │        │                │          Total │ 272 (1.1 KB)           │
└─────────┴────────┴────────────────┴────────────────┴────────────────────────┘

                        Total Parameters: 272 (1.1 KB)
)";
  MLP model{.features = {12, 8, 4}};
  Array x = jnp::ones({32, 10});
  CHECK(model.tabulate(rnd::PRNGKey(0), x) == want);
  // tabulate counts what init creates.
  CHECK(param_count(model.init(rnd::PRNGKey(0), x)) == 272);
}

namespace {
struct Block : nn::Module<Block> {
  Array operator()(nn::Scope& s, const Array& x, bool train) const {
    Array h = s(nn::Dense{.features = 8}, s(nn::LayerNorm{}, x));
    h = s(nn::Dropout{.rate = 0.1}, nn::gelu(h), !train);
    return x + s(nn::Dense{.features = x.shape().back()}, h);
  }
};
struct Net : nn::Module<Net> {  // tied embeddings, nested blocks, a parameter-free Dropout
  Array operator()(nn::Scope& s, const Array& ids, bool train) const {
    auto embed = s.child("embed", nn::Embed{.num_embeddings = 100, .features = 4});
    Array x = embed(ids);
    for (int i = 0; i < 2; ++i) x = s(Block{}, x, train);
    return embed.method(&nn::Embed::attend, s(nn::LayerNorm{}, x));
  }
};
}  // namespace

TEST_CASE(
    "tabulate: nested paths, several inputs as a YAML list, parameter-free rows, repeated calls") {
  Array ids = Array::from({2, 5}, std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  std::string t = Net{}.tabulate(
      nn::Rngs{{"params", rnd::PRNGKey(0)}, {"dropout", rnd::PRNGKey(1)}}, ids, true);
  CHECK(has_line(t, "                                             Net Summary"));
  // Several arguments print as Flax's YAML list, Python's repr for scalars: (ids, True).
  CHECK(has_line(t,
                 "│                     │ Net       │ - int32[2,5]     │ float32[2,5,100] │        "
                 "                   │"));
  CHECK(has_line(t,
                 "│                     │           │ - True           │                  │        "
                 "                   │"));
  CHECK(has_line(t,
                 "│ embed               │ Embed     │ int32[2,5]       │ float32[2,5,4]   │ "
                 "embedding: float32[100,4] │"));
  CHECK(has_line(t,
                 "│                     │           │                  │                  │ 400 "
                 "(1.6 KB)              │"));
  CHECK(has_line(t,
                 "│ Block_0/LayerNorm_0 │ LayerNorm │ float32[2,5,4]   │ float32[2,5,4]   │ bias: "
                 "float32[4]          │"));
  CHECK(has_line(t,
                 "│                     │           │                  │                  │ scale: "
                 "float32[4]         │"));
  // A module without params has an empty params cell; its `deterministic` argument shows.
  CHECK(has_line(t,
                 "│ Block_1/Dropout_0   │ Dropout   │ - float32[2,5,8] │ float32[2,5,8]   │        "
                 "                   │"));
  CHECK(has_line(t,
                 "│                     │           │ - False          │                  │        "
                 "                   │"));
  CHECK(has_line(t,
                 "│                     │           │                  │            Total │ 576 "
                 "(2.3 KB)              │"));
  CHECK(has_line(t, "                                   Total Parameters: 576 (2.3 KB)"));
  // Rows in call order, each path once (the second call of `embed`, attend, is not repeated).
  std::vector<std::string> paths;
  std::stringstream ss(t);
  for (std::string l; std::getline(ss, l);)
    if (l.rfind("│ ", 0) == 0 && l.find("│ ", 4) != std::string::npos) {
      std::string p = l.substr(4, l.find(' ', 4) - 4);
      if (!p.empty()) paths.push_back(p);
    }
  CHECK(paths == std::vector<std::string>{"embed", "Block_0", "Block_0/LayerNorm_0",
                                          "Block_0/Dense_0", "Block_0/Dropout_0", "Block_0/Dense_1",
                                          "Block_1", "Block_1/LayerNorm_0", "Block_1/Dense_0",
                                          "Block_1/Dropout_0", "Block_1/Dense_1", "LayerNorm_0"});
  CHECK(count_lines_starting(t, "│ embed ") == 1);
}

TEST_CASE(
    "tabulate: byte units as Flax's _bytes_repr (decimal, strict thresholds, ',' separators)") {
  struct Units : nn::Module<Units> {
    Array operator()(nn::Scope& s, const Array& x) const {
      s.call("b1000", nn::Dense{.features = 5}, jnp::ones({1, 49}));     // 250 params = 1000 B
      s.call("b1004", nn::Dense{.features = 1}, jnp::ones({1, 250}));    // 251 params = 1004 B
      s.call("kb999", nn::Dense{.features = 3}, jnp::ones({1, 83332}));  // 999,996 B
      s.call("mb", nn::Dense{.features = 1000}, jnp::ones({1, 1000}));
      return x;
    }
  };
  std::string t = Units{}.tabulate(rnd::PRNGKey(0), jnp::ones({2}));
  CHECK(has_line(t,
                 "│       │        │                  │                 │ 250 (1,000 B)            "
                 "  │"));  // not "1.0 KB"
  CHECK(has_line(
      t, "│       │        │                  │                 │ 251 (1.0 KB)               │"));
  CHECK(has_line(t,
                 "│       │        │                  │                 │ 249,999 (1,000.0 KB)     "
                 "  │"));  // Python rounds up
  CHECK(has_line(
      t, "│       │        │                  │                 │ 1,001,000 (4.0 MB)         │"));
  CHECK(has_line(
      t, "│       │        │                  │           Total │ 1,251,500 (5.0 MB)         │"));
  CHECK(has_line(t, "                        Total Parameters: 1,251,500 (5.0 MB)"));
}

TEST_CASE("tabulate: scalar arguments print as Python's repr") {
  struct Scaled : nn::Module<Scaled> {
    Array operator()(nn::Scope& s, const Array& x, double factor, int32_t steps, float f) const {
      return s(nn::Dense{.features = 2}, x) * static_cast<float>(factor * steps * f);
    }
  };
  std::string t = Scaled{}.tabulate(rnd::PRNGKey(0), jnp::ones({1, 3}), 0.5, int32_t{3}, 2.f);
  CHECK(t.find("│ - float32[1,3] │") != std::string::npos);
  CHECK(t.find("│ - 0.5          │") != std::string::npos);
  CHECK(t.find("│ - 3            │") != std::string::npos);
  CHECK(t.find("│ - 2.0          │") != std::string::npos);
}
