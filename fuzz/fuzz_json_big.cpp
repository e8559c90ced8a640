// libFuzzer target: the two-thread path of the JSON reader, which only lists of >= 4 MB take
// (split at an outermost element boundary near the middle, one-thread fallback). The input is a
// list of byte edits applied to a fixed ~4.6 MB document {"w": [[...], ...], "b": {"x]": [1]}};
// edits land near the split point, near the ends of the list, or anywhere.
// Oracle: the same text with a tab after the first '[' (which makes the reader take its
// one-thread path) must give the same tree, or fail too.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"

using namespace flaxpp;

namespace {

const std::string& base_document() {
  static const std::string doc = [] {
    Tree t{{"w", random::normal(random::PRNGKey(0), {54000, 4})},
           {"b", Tree{{"x]", Array::vector({1})}}}};
    return to_json(t);
  }();
  return doc;
}

// Parses and reports {ok, tree}; only SerializationError counts as a clean failure.
std::pair<bool, Tree> parse(const std::string& text) {
  try {
    return {true, from_json(text)};
  } catch (const SerializationError&) {
    return {false, Tree()};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool shown =
      (std::fprintf(stderr, "fuzz_json_big: base document of %zu bytes\n", base_document().size()),
       true);
  (void)shown;
  std::string doc = base_document();
  const size_t open = doc.find('['), close = doc.find("]]") + 1, mid = open + (close - open) / 2;
  for (size_t i = 0; i + 4 <= size && i < 4 * 16; i += 4) {
    size_t off = (size_t{data[i + 1]} << 8) | data[i + 2];
    size_t at;
    switch (data[i] % 4) {
      case 0: at = mid + off % 1024 - 512; break;    // around the split point
      case 1: at = close - off % 256; break;         // the list's end
      case 2: at = open + off % 256; break;          // its start
      default: at = (off * 73) % doc.size(); break;  // anywhere
    }
    if (at < doc.size()) doc[at] = static_cast<char>(data[i + 3]);
  }
  auto [ok, tree] = parse(doc);
  if (doc[open] != '[') return 0;  // no oracle: the list no longer starts where it did
  std::string one_thread = doc;
  one_thread.insert(open + 1, "\t");
  auto [ok1, tree1] = parse(one_thread);
  if (ok != ok1) fuzz::die("the two-thread and one-thread JSON parses disagree on success");
  if (ok && !tree_equal(tree, tree1)) fuzz::die("the two-thread and one-thread JSON parses differ");
  return 0;
}
