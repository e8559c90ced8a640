#include "data/augment.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace flaxpp::data {

namespace {
void require_nhwc(const Array& x, const char* what) {
  if (x.shape().size() != 4 || x.dtype() != DType::float32)
    throw std::invalid_argument(std::string(what) + ": expected float32 images (n, h, w, c), got " +
                                dtype_name(x.dtype()) + to_string(x.shape()));
}
}  // namespace

Array random_crop(const Array& images, random::Key key, int64_t padding) {
  require_nhwc(images, "random_crop");
  if (padding < 0)
    throw std::invalid_argument("random_crop: padding must be >= 0, got " +
                                std::to_string(padding));
  const int64_t n = images.shape()[0], h = images.shape()[1], w = images.shape()[2],
                c = images.shape()[3];
  Array offsets = random::randint(key, {n, 2}, 0, 2 * padding + 1);
  const int32_t* off = offsets.data<int32_t>();
  Array out = Array::empty(images.shape(), DType::float32);
  const float* src = images.data<float>();
  float* dst = out.mutable_data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t dy = off[2 * i] - padding, dx = off[2 * i + 1] - padding;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sy = y + dy, sx = x + dx;
        float* d = dst + ((i * h + y) * w + x) * c;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w)
          std::memset(d, 0, static_cast<size_t>(c) * sizeof(float));
        else
          std::memcpy(d, src + ((i * h + sy) * w + sx) * c, static_cast<size_t>(c) * sizeof(float));
      }
  }
  return out;
}

Array random_flip_left_right(const Array& images, random::Key key) {
  require_nhwc(images, "random_flip_left_right");
  const int64_t n = images.shape()[0], h = images.shape()[1], w = images.shape()[2],
                c = images.shape()[3];
  Array flip = random::bernoulli(key, 0.5f, {n});
  const bool* f = flip.data<bool>();
  Array out = Array::empty(images.shape(), DType::float32);
  const float* src = images.data<float>();
  float* dst = out.mutable_data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        std::memcpy(dst + ((i * h + y) * w + x) * c,
                    src + ((i * h + y) * w + (f[i] ? w - 1 - x : x)) * c,
                    static_cast<size_t>(c) * sizeof(float));
  return out;
}

}  // namespace flaxpp::data
