// flaxpp::data datasets: named columns of rows (a Tree of arrays sharing their leading
// dimension), held in memory or memory-mapped from a file, gathered into batches by row index.
//
//   auto ds = data::Dataset::from_arrays(Tree{{"image", images}, {"label", labels}});  // (n, ...)
//   Tree batch = ds.gather({4, 0, 7});   // {"image": (3, ...), "label": (3,)}
//
//   // a raw file of n rows of 28 x 28 uint8 after a 16-byte header, as float32 on the fly:
//   auto pixels = data::MappedSource::open("images.raw", {28, 28}, data::RawType::uint8_as_float32,
//                                          /*offset=*/16, /*scale=*/255.f);
//   data::Dataset ds2 = data::Dataset().add("image", pixels).add("label", labels_source);
//
// Columns keep the order they were added in (a batch is a Tree in that insertion order). Every
// column must have the same number of rows; a row index out of range throws std::out_of_range
// naming the column, the index and the size. Sources are immutable and shared, so a Dataset is
// cheap to copy and safe to read from several threads (the prefetch thread of loader.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/array.hpp"
#include "../core/error.hpp"
#include "../core/tree.hpp"

namespace flaxpp::data {

// A column: n rows of one shape, copied out row by row into a batch Array.
class Source {
 public:
  virtual ~Source() = default;
  virtual int64_t size() const = 0;  // rows
  virtual const Shape& row_shape() const = 0;
  virtual DType dtype() const = 0;  // of the batch arrays
  // Rows idx[0..n) into out (n * row elements of dtype(), contiguous).
  virtual void copy_rows(const int64_t* idx, int64_t n, void* out) const = 0;
};

// An Array held in memory, its rows along axis 0 (rank >= 1).
class ArraySource final : public Source {
 public:
  explicit ArraySource(Array rows);
  int64_t size() const override { return rows_.shape()[0]; }
  const Shape& row_shape() const override { return row_shape_; }
  DType dtype() const override { return rows_.dtype(); }
  void copy_rows(const int64_t* idx, int64_t n, void* out) const override;

 private:
  Array rows_;
  Shape row_shape_;
  size_t row_bytes_;
};

// How the bytes of a mapped file are stored; uint8 rows become float32 (value / scale) or int32
// batches, the others are copied as they are.
enum class RawType { float32, int32, uint8_as_float32, uint8_as_int32 };

// A file memory-mapped read-only: rows of row_shape stored contiguously from byte `offset` (the
// row count is (file size - offset) / row bytes and must divide exactly). Little-endian, as
// numpy's tofile on x86-64 and aarch64. Errors (flaxpp::Error, core/error.hpp) name the file.
class MappedSource final : public Source {
 public:
  static std::shared_ptr<const MappedSource> open(const std::filesystem::path& path,
                                                  Shape row_shape, RawType type, int64_t offset = 0,
                                                  float scale = 1.f);
  ~MappedSource() override;
  MappedSource(const MappedSource&) = delete;
  MappedSource& operator=(const MappedSource&) = delete;
  int64_t size() const override { return rows_; }
  const Shape& row_shape() const override { return row_shape_; }
  DType dtype() const override;
  void copy_rows(const int64_t* idx, int64_t n, void* out) const override;

 private:
  MappedSource() = default;
  std::string path_;
  const uint8_t* base_ = nullptr;  // the mapping
  size_t mapped_bytes_ = 0;
  int64_t offset_ = 0, rows_ = 0, row_elems_ = 0;
  Shape row_shape_;
  RawType type_ = RawType::float32;
  float scale_ = 1.f;
};

class Dataset {
 public:
  Dataset() = default;
  // One ArraySource per leaf ('/'-paths as column names: a nested tree gives "a/b" columns and
  // batches with the same nesting).
  static Dataset from_arrays(const Tree& arrays);
  // This dataset plus a column; throws std::invalid_argument on a duplicate name or a row count
  // that differs from the other columns'.
  Dataset add(const std::string& name, std::shared_ptr<const Source> source) const;

  int64_t size() const { return size_; }
  const std::vector<std::pair<std::string, std::shared_ptr<const Source>>>& columns() const {
    return columns_;
  }
  // {name: (n, row...)} for rows idx[0..n).
  Tree gather(const int64_t* idx, int64_t n) const;
  Tree gather(const std::vector<int64_t>& idx) const {
    return gather(idx.data(), static_cast<int64_t>(idx.size()));
  }

 private:
  std::vector<std::pair<std::string, std::shared_ptr<const Source>>> columns_;
  int64_t size_ = 0;
};

}  // namespace flaxpp::data
