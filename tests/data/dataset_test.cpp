// data::Dataset and its sources (data/dataset.hpp): gathering rows in memory and from a
// memory-mapped file, with the errors for mismatched columns, bad rows and bad files.
#include "data/dataset.hpp"

#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {
fs::path tmp(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / "data";
  fs::create_directories(d);
  return d / name;
}
}  // namespace

TEST_CASE("from_arrays gathers rows of every column, nested trees included") {
  Array x = Array::from({4, 2}, std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31});
  Array y = Array::from({4}, std::vector<int32_t>{7, 8, 9, 6});
  auto ds = data::Dataset::from_arrays(Tree{{"x", x}, {"meta", Tree{{"y", y}}}});
  CHECK(ds.size() == 4);
  Tree b = ds.gather({3, 0, 3});
  CHECK(b.keys() == std::vector<std::string>{"x", "meta"});
  CHECK(b.at("x").array().shape() == Shape{3, 2});
  CHECK(b.at("x").array().to_float() == std::vector<float>{30, 31, 0, 1, 30, 31});
  CHECK(b.at("meta/y").array().dtype() == DType::int32);
  CHECK(b.at("meta/y").array().to_float() == std::vector<float>{6, 7, 6});
  CHECK_THROWS_WITH_AS(ds.gather({4}), "ArraySource: row 4 out of range for 4 rows",
                       std::out_of_range);
  CHECK_THROWS_WITH_AS(ds.add("z", std::make_shared<data::ArraySource>(Array::vector({1.f}))),
                       "Dataset::add: column 'z' has 1 rows, the others 4", std::invalid_argument);
  CHECK_THROWS_WITH_AS(ds.add("x", std::make_shared<data::ArraySource>(x)),
                       "Dataset::add: column 'x' given twice", std::invalid_argument);
  CHECK_THROWS_AS(data::ArraySource(Array(1.f)), std::invalid_argument);
}

TEST_CASE("MappedSource reads rows of a raw file after a header, uint8 as float32 or int32") {
  auto path = tmp("pixels.raw");
  {
    std::ofstream f(path, std::ios::binary);
    f.write("HEADER0123456789", 16);  // 16 bytes, as an idx3 header
    for (int i = 0; i < 3 * 6; ++i) f.put(static_cast<char>(i * 10));
  }
  auto src = data::MappedSource::open(path, {2, 3}, data::RawType::uint8_as_float32, 16, 255.f);
  CHECK(src->size() == 3);
  CHECK(src->row_shape() == Shape{2, 3});
  auto ds =
      data::Dataset()
          .add("image", src)
          .add("label", data::MappedSource::open(path, {6}, data::RawType::uint8_as_int32, 16));
  Tree b = ds.gather({2, 0});
  std::vector<float> want;
  for (int i : {12, 13, 14, 15, 16, 17, 0, 1, 2, 3, 4, 5})
    want.push_back(static_cast<float>(i * 10) / 255.f);
  CHECK(b.at("image").array().shape() == Shape{2, 2, 3});
  CHECK(b.at("image").array().to_float() == want);
  CHECK(b.at("label").array().dtype() == DType::int32);
  CHECK(b.at("label").array().to_float()[6] == 0.f);
  CHECK(b.at("label").array().to_float()[0] == 120.f);
  // float32 rows, as numpy's tofile writes them.
  auto fpath = tmp("rows.f32");
  {
    std::ofstream f(fpath, std::ios::binary);
    float v[4] = {1.5f, -2.f, 3.25f, 4.f};
    f.write(reinterpret_cast<const char*>(v), sizeof v);
  }
  auto fs32 = data::MappedSource::open(fpath, {2}, data::RawType::float32);
  CHECK(data::Dataset().add("v", fs32).gather({1}).at("v").array().to_float() ==
        std::vector<float>{3.25f, 4.f});
  const std::string bad_size = "MappedSource: " + path.string() +
                               " has 34 bytes: after the 16-byte offset that is not a whole "
                               "number of 5-byte rows";
  CHECK_THROWS_WITH_AS(data::MappedSource::open(path, {5}, data::RawType::uint8_as_int32, 16),
                       bad_size.c_str(), flaxpp::Error);
  CHECK_THROWS_WITH_AS(
      data::MappedSource::open(tmp("missing.raw"), {1}, data::RawType::float32),
      ("MappedSource: cannot open " + tmp("missing.raw").string() + ": No such file or directory")
          .c_str(),
      flaxpp::Error);
  CHECK_THROWS_AS(src->copy_rows(std::vector<int64_t>{3}.data(), 1, nullptr), std::out_of_range);
}
