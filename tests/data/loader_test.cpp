// data::Loader (data/loader.hpp): the epoch orders from fold_in(key, epoch), the remainder
// policies, sharding by rank, determinism, resuming from a step and the prefetch thread (which
// must return the same batches as random access).
#include "data/loader.hpp"

#include <numeric>
#include <set>
#include <stdexcept>

#include <doctest/doctest.h>

using namespace flaxpp;

namespace {
// n rows whose "id" column is the row number, so a batch shows which rows it holds.
data::Dataset ids(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return data::Dataset::from_arrays(Tree{{"id", Array::from({n}, v)}});
}
std::vector<int> rows(const data::Batch& b) {
  auto f = b.data.at("id").array().to_float();
  return std::vector<int>(f.begin(), f.end());
}
std::vector<int> perm(random::Key key, int64_t epoch, int64_t n) {
  auto p = random::permutation(random::fold_in(key, static_cast<uint32_t>(epoch)), n).to_float();
  return std::vector<int>(p.begin(), p.end());
}
std::vector<int> slice(const std::vector<int>& v, size_t a, size_t b) {
  return std::vector<int>(v.begin() + static_cast<long>(a), v.begin() + static_cast<long>(b));
}
}  // namespace

TEST_CASE("each epoch follows permutation(fold_in(key, epoch)); a new order every epoch") {
  auto key = random::PRNGKey(4);
  data::Loader loader(ids(10), key, {.batch_size = 5});
  CHECK(loader.steps_per_epoch() == 2);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    auto p = perm(key, epoch, 10);
    CHECK(rows(loader.at(2 * epoch)) == slice(p, 0, 5));
    CHECK(rows(loader.at(2 * epoch + 1)) == slice(p, 5, 10));
    CHECK(loader.at(2 * epoch + 1).epoch == epoch);
    CHECK(loader.at(2 * epoch + 1).index == 1);
  }
  CHECK(perm(key, 0, 10) != perm(key, 1, 10));
  data::Loader ordered(ids(10), key, {.batch_size = 5, .shuffle = false});
  CHECK(rows(ordered.at(3)) == std::vector<int>{5, 6, 7, 8, 9});
}

TEST_CASE("remainder: drop, keep, pad (with a mask)") {
  auto key = random::PRNGKey(0);
  auto p = perm(key, 0, 10);
  data::Loader drop(ids(10), key, {.batch_size = 4, .remainder = data::Remainder::drop});
  CHECK(drop.steps_per_epoch() == 2);
  CHECK(rows(drop.at(2)) == slice(perm(key, 1, 10), 0, 4));  // step 2 starts epoch 1
  data::Loader keep(ids(10), key, {.batch_size = 4, .remainder = data::Remainder::keep});
  CHECK(keep.steps_per_epoch() == 3);
  CHECK(rows(keep.at(2)) == slice(p, 8, 10));
  CHECK(keep.at(2).mask.to_float() == std::vector<float>{1, 1});
  data::Loader pad(ids(10), key, {.batch_size = 4, .remainder = data::Remainder::pad});
  CHECK(pad.steps_per_epoch() == 3);
  CHECK(rows(pad.at(2)) == std::vector<int>{p[8], p[9], p[8], p[9]});
  CHECK(pad.at(2).mask.to_float() == std::vector<float>{1, 1, 0, 0});
  CHECK(pad.at(1).mask.to_float() == std::vector<float>{1, 1, 1, 1});
  CHECK_THROWS_WITH_AS(data::Loader(ids(3), key, {.batch_size = 4}),
                       "Loader: batch_size 4 exceeds the 3 rows with Remainder::drop: no batch in "
                       "an epoch",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(data::Loader(ids(8), key, {.batch_size = 4, .rank = 2, .num_ranks = 2}),
                       "Loader: rank 2 is not in [0, 2)", std::invalid_argument);
}

TEST_CASE("sharding: the ranks' rows make up the global batch, in order") {
  auto key = random::PRNGKey(9);
  std::vector<int> joined;
  std::vector<size_t> sizes;
  for (int r = 0; r < 3; ++r) {
    data::Loader l(ids(20), key, {.batch_size = 8, .rank = r, .num_ranks = 3});
    auto b = rows(l.at(1));
    sizes.push_back(b.size());
    joined.insert(joined.end(), b.begin(), b.end());
  }
  CHECK(sizes == std::vector<size_t>{3, 3, 2});
  data::Loader all(ids(20), key, {.batch_size = 8});
  CHECK(joined == rows(all.at(1)));
}

TEST_CASE("prefetch: next() gives at(step) for every step, across epochs and after seek") {
  auto key = random::PRNGKey(2);
  int transformed = 0;
  data::LoaderOptions o{.batch_size = 3, .remainder = data::Remainder::keep, .prefetch = 3};
  o.transform = [&](const Tree& b, random::Key k) {
    ++transformed;  // the worker thread only: next() never runs it for a prefetched batch
    return b.set("key", Tree(random::key_data(k)));
  };
  data::Loader pre(ids(10), key, o);
  o.prefetch = 0;
  data::Loader plain(ids(10), key, o);
  for (int64_t s = 0; s < 13; ++s) {
    auto a = pre.next(), b = plain.at(s);
    CHECK(a.step == s);
    CHECK(tree_equal(a.data, b.data));
    CHECK(tree_equal(a.data["key"],
                     Tree(random::key_data(random::fold_in(random::fold_in(key, 0x7fffffffu),
                                                           static_cast<uint32_t>(s))))));
  }
  pre.seek(5);  // resume
  for (int64_t s = 5; s < 9; ++s) CHECK(tree_equal(pre.next().data, plain.at(s).data));
  plain.seek(7);
  CHECK(tree_equal(plain.next().data, pre.at(7).data));
  // Same key, same batches; another key, another order.
  data::Loader again(ids(10), key, {.batch_size = 3});
  data::Loader other(ids(10), random::PRNGKey(3), {.batch_size = 3});
  CHECK(rows(again.at(4)) == rows(data::Loader(ids(10), key, {.batch_size = 3}).at(4)));
  CHECK(rows(other.at(0)) != rows(again.at(0)));
  CHECK(transformed > 0);
}

TEST_CASE("an error in the prefetch thread surfaces in next()") {
  data::LoaderOptions o{.batch_size = 2, .prefetch = 2};
  int calls = 0;
  o.transform = [&](const Tree& b, random::Key) -> Tree {
    if (++calls == 3) throw std::runtime_error("bad batch");
    return b;
  };
  data::Loader l(ids(10), random::PRNGKey(0), o);
  l.next();
  l.next();
  CHECK_THROWS_WITH_AS(l.next(), "bad batch", std::runtime_error);
}
