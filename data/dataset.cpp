#include "data/dataset.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <sys/mman.h>
#include <sys/stat.h>

namespace flaxpp::data {

namespace {

int64_t elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

void require_index(int64_t i, int64_t size, const std::string& what) {
  if (i < 0 || i >= size)
    throw std::out_of_range(what + ": row " + std::to_string(i) + " out of range for " +
                            std::to_string(size) + " rows");
}

}  // namespace

// ---- ArraySource -------------------------------------------------------------------------

ArraySource::ArraySource(Array rows) : rows_(std::move(rows)) {
  if (rows_.shape().size() < 1)
    throw std::invalid_argument("ArraySource: a scalar has no rows; give an array of rank >= 1");
  row_shape_ = rows_.shape();
  row_shape_.erase(0);
  row_bytes_ = static_cast<size_t>(elements(row_shape_)) * itemsize(rows_.dtype());
}

void ArraySource::copy_rows(const int64_t* idx, int64_t n, void* out) const {
  const auto* src = static_cast<const uint8_t*>(rows_.raw());
  auto* dst = static_cast<uint8_t*>(out);
  for (int64_t i = 0; i < n; ++i) {
    require_index(idx[i], size(), "ArraySource");
    std::memcpy(dst + static_cast<size_t>(i) * row_bytes_,
                src + static_cast<size_t>(idx[i]) * row_bytes_, row_bytes_);
  }
}

// ---- MappedSource ------------------------------------------------------------------------

namespace {
size_t stored_bytes(RawType t) { return t == RawType::float32 || t == RawType::int32 ? 4 : 1; }
}  // namespace

std::shared_ptr<const MappedSource> MappedSource::open(const std::filesystem::path& path,
                                                       Shape row_shape, RawType type,
                                                       int64_t offset, float scale) {
  std::shared_ptr<MappedSource> s(new MappedSource());
  s->path_ = path.string();
  s->row_shape_ = row_shape;
  s->type_ = type;
  s->scale_ = scale;
  s->offset_ = offset;
  s->row_elems_ = elements(row_shape);
  if (s->row_elems_ <= 0 || offset < 0)
    throw std::invalid_argument("MappedSource: " + s->path_ +
                                ": empty row shape or negative offset");
  int fd = ::open(s->path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("MappedSource: cannot open " + s->path_ + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error("MappedSource: cannot stat " + s->path_ + ": " + std::strerror(e));
  }
  const auto file_bytes = static_cast<int64_t>(st.st_size);
  const int64_t row_bytes = s->row_elems_ * static_cast<int64_t>(stored_bytes(type));
  if (file_bytes < offset || (file_bytes - offset) % row_bytes != 0) {
    ::close(fd);
    throw Error("MappedSource: " + s->path_ + " has " + std::to_string(file_bytes) +
                " bytes: after the " + std::to_string(offset) +
                "-byte offset that is not a whole number of " + std::to_string(row_bytes) +
                "-byte rows");
  }
  s->rows_ = (file_bytes - offset) / row_bytes;
  if (file_bytes > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error("MappedSource: cannot map " + s->path_ + ": " + std::strerror(e));
    }
    s->base_ = static_cast<const uint8_t*>(p);
    s->mapped_bytes_ = static_cast<size_t>(file_bytes);
  }
  ::close(fd);  // the mapping stays valid
  return s;
}

MappedSource::~MappedSource() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), mapped_bytes_);
}

DType MappedSource::dtype() const {
  switch (type_) {
    case RawType::float32:
    case RawType::uint8_as_float32: return DType::float32;
    default: return DType::int32;
  }
}

void MappedSource::copy_rows(const int64_t* idx, int64_t n, void* out) const {
  const size_t row_bytes = static_cast<size_t>(row_elems_) * stored_bytes(type_);
  for (int64_t i = 0; i < n; ++i) {
    require_index(idx[i], rows_, "MappedSource " + path_);
    const uint8_t* src = base_ + offset_ + static_cast<size_t>(idx[i]) * row_bytes;
    const size_t at = static_cast<size_t>(i) * static_cast<size_t>(row_elems_);
    if (type_ == RawType::float32 || type_ == RawType::int32) {
      std::memcpy(static_cast<uint8_t*>(out) + at * 4, src, row_bytes);
    } else if (type_ == RawType::uint8_as_float32) {
      float* dst = static_cast<float*>(out) + at;
      for (int64_t j = 0; j < row_elems_; ++j) dst[j] = static_cast<float>(src[j]) / scale_;
    } else {
      int32_t* dst = static_cast<int32_t*>(out) + at;
      for (int64_t j = 0; j < row_elems_; ++j) dst[j] = src[j];
    }
  }
}

// ---- Dataset -----------------------------------------------------------------------------

Dataset Dataset::from_arrays(const Tree& arrays) {
  Dataset d;
  for (const auto& [path, leaf] : flatten_dict(arrays))
    d = d.add(path, std::make_shared<ArraySource>(leaf));
  return d;
}

Dataset Dataset::add(const std::string& name, std::shared_ptr<const Source> source) const {
  if (!source) throw std::invalid_argument("Dataset::add: column '" + name + "' has no source");
  for (const auto& [n, s] : columns_)
    if (n == name) throw std::invalid_argument("Dataset::add: column '" + name + "' given twice");
  if (!columns_.empty() && source->size() != size_)
    throw std::invalid_argument("Dataset::add: column '" + name + "' has " +
                                std::to_string(source->size()) + " rows, the others " +
                                std::to_string(size_));
  Dataset d = *this;
  d.columns_.emplace_back(name, std::move(source));
  d.size_ = d.columns_.front().second->size();
  return d;
}

Tree Dataset::gather(const int64_t* idx, int64_t n) const {
  TreeBuilder b;
  for (const auto& [name, src] : columns_) {
    Shape shape = src->row_shape();
    shape.insert(0, n);
    Array out = Array::empty(shape, src->dtype());
    src->copy_rows(idx, n, out.mutable_raw());
    b.set(name, Tree(out));
  }
  return b.build();
}

}  // namespace flaxpp::data
