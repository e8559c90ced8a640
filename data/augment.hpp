// Image augmentation from explicit keys, for Loader's transform: float32 NHWC batches.
//
//   opts.transform = [](const Tree& b, random::Key k) {
//     auto ks = random::split(k);
//     return b.set("image", data::random_flip_left_right(
//                               data::random_crop(b["image"].array(), ks[0], 2), ks[1]));
//   };
//
// random_crop pads each image with `padding` zeros on every side and cuts an H x W window at
// offsets (dy, dx) = randint(key, (n, 2), 0, 2 * padding + 1) (row i for image i): the classic
// CIFAR-style shift. random_flip_left_right mirrors image i along W where
// bernoulli(key, 0.5, (n,))[i]. Both keep the shape and dtype; other ranks or dtypes throw
// std::invalid_argument naming the function and the shape.
#pragma once

#include "../core/array.hpp"
#include "../core/random.hpp"

namespace flaxpp::data {

Array random_crop(const Array& images, random::Key key, int64_t padding);
Array random_flip_left_right(const Array& images, random::Key key);

}  // namespace flaxpp::data
