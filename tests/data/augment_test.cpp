// data/augment.hpp: random crop and flip from explicit keys, checked pixel by pixel against the
// offsets and coin flips the same keys give.
#include "data/augment.hpp"

#include <doctest/doctest.h>

using namespace flaxpp;

namespace {
// (n, 4, 5, 2) images whose pixel value encodes (image, y, x, channel).
Array images(int64_t n) {
  std::vector<float> v;
  for (int64_t i = 0; i < n; ++i)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x)
        for (int c = 0; c < 2; ++c)
          v.push_back(static_cast<float>(1000 * i + 100 * y + 10 * x + c + 1));
  return Array::from({n, 4, 5, 2}, v);
}
float px(const std::vector<float>& v, int64_t i, int64_t y, int64_t x, int64_t c) {
  return v[static_cast<size_t>(((i * 4 + y) * 5 + x) * 2 + c)];
}
}  // namespace

TEST_CASE("random_crop shifts each image by its randint offsets, zeros outside") {
  const int64_t n = 6, pad = 2;
  auto key = random::PRNGKey(5);
  Array in = images(n);
  auto out = data::random_crop(in, key, pad).to_float();
  auto off = random::randint(key, {n, 2}, 0, 2 * pad + 1).to_float();
  auto src = in.to_float();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t c = 0; c < 2; ++c) {
          int64_t sy = y + static_cast<int64_t>(off[2 * i]) - pad,
                  sx = x + static_cast<int64_t>(off[2 * i + 1]) - pad;
          float want = (sy < 0 || sy >= 4 || sx < 0 || sx >= 5) ? 0.f : px(src, i, sy, sx, c);
          CHECK(px(out, i, y, x, c) == want);
        }
  CHECK(data::random_crop(in, key, 0).to_float() == src);
  CHECK_THROWS_WITH_AS(data::random_crop(Array::vector({1.f}), key, 1),
                       "random_crop: expected float32 images (n, h, w, c), got float32(1,)",
                       std::invalid_argument);
}

TEST_CASE("random_flip_left_right mirrors the images bernoulli(key, 0.5) picks") {
  const int64_t n = 8;
  auto key = random::PRNGKey(1);
  Array in = images(n);
  auto out = data::random_flip_left_right(in, key).to_float();
  auto flip = random::bernoulli(key, 0.5f, {n}).to_float();
  auto src = in.to_float();
  int flipped = 0;
  for (int64_t i = 0; i < n; ++i) {
    flipped += flip[static_cast<size_t>(i)] != 0;
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        CHECK(px(out, i, y, x, 1) ==
              px(src, i, y, flip[static_cast<size_t>(i)] != 0 ? 4 - x : x, 1));
  }
  CHECK(flipped > 0);
  CHECK(flipped < n);
  // The same key flips the same images back.
  CHECK(data::random_flip_left_right(data::random_flip_left_right(in, key), key).to_float() == src);
}
