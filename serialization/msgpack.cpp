// Flax msgpack checkpoints (flax.serialization.msgpack_serialize / msgpack_restore).
//
// Why a hand-written codec and not nlohmann::json::to_msgpack / from_msgpack: nlohmann's framing
// is the same as msgpack-python's (tests/serialization/serialization_test.cpp checks our bytes against
// nlohmann's for the same document), but it copies ext/bin payloads byte by byte and needs the
// whole tree as a json document with a copy of every array. Measured on a 124 MB float32 array:
// to_msgpack 169 MB/s, from_msgpack 35 MB/s (our targets: 500 MB/s). This file writes only the
// subset Flax emits (maps, str, uint, bool, ext, bin) straight from the array buffers, and reads
// msgpack without copying until the bytes land in an Array.
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "serialization/serialization.hpp"

namespace flaxpp {

static_assert(std::endian::native == std::endian::little,
              "Flax writes native (little-endian) array bytes; big-endian hosts are unsupported");

namespace {

constexpr const char* kChunkMarker = "__msgpack_chunked_array__";

std::string shown(const std::string& path) { return path.empty() ? "<root>" : path; }

// ---- writer --------------------------------------------------------------------------------

class MsgWriter {
 public:
  explicit MsgWriter(const ByteSink& sink) : sink_(sink) { buf_.reserve(kBuf); }
  ~MsgWriter() = default;

  void flush() {
    if (!buf_.empty()) sink_(buf_.data(), buf_.size());
    buf_.clear();
  }
  void raw(const void* p, size_t n) {
    if (n >= kDirect) {  // large array bytes go to the sink without a copy
      flush();
      sink_(static_cast<const char*>(p), n);
      return;
    }
    if (buf_.size() + n > kBuf) flush();
    buf_.append(static_cast<const char*>(p), n);
  }
  void byte(uint8_t b) { raw(&b, 1); }
  template <class T>
  void be(T v) {  // big-endian, as msgpack stores lengths and numbers
    uint8_t b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i)
      b[i] = static_cast<uint8_t>(v >> (8 * (sizeof(T) - 1 - i)));
    raw(b, sizeof(T));
  }
  // Header helpers pick the smallest form, as msgpack-python does.
  void sized(size_t n, uint8_t fix, size_t fixmax, uint8_t t8, uint8_t t16, uint8_t t32) {
    if (n <= fixmax && fix) {
      byte(static_cast<uint8_t>(fix | n));
    } else if (n <= 0xff && t8) {
      byte(t8);
      be<uint8_t>(static_cast<uint8_t>(n));
    } else if (n <= 0xffff) {
      byte(t16);
      be<uint16_t>(static_cast<uint16_t>(n));
    } else {
      byte(t32);
      be<uint32_t>(static_cast<uint32_t>(n));
    }
  }
  void map(size_t n) { sized(n, 0x80, 15, 0, 0xde, 0xdf); }
  void array(size_t n) { sized(n, 0x90, 15, 0, 0xdc, 0xdd); }
  void str(std::string_view s) {
    sized(s.size(), 0xa0, 31, 0xd9, 0xda, 0xdb);
    raw(s.data(), s.size());
  }
  void bin_header(size_t n) { sized(n, 0, 0, 0xc4, 0xc5, 0xc6); }
  void ext_header(int8_t type, size_t n) {
    switch (n) {  // fixext 1/2/4/8/16 carry no length byte
      case 1: byte(0xd4); break;
      case 2: byte(0xd5); break;
      case 4: byte(0xd6); break;
      case 8: byte(0xd7); break;
      case 16: byte(0xd8); break;
      default: sized(n, 0, 0, 0xc7, 0xc8, 0xc9);
    }
    byte(static_cast<uint8_t>(type));
  }
  void uint(uint64_t v) {
    if (v < 128) {
      byte(static_cast<uint8_t>(v));
    } else if (v <= 0xff) {
      byte(0xcc);
      be<uint8_t>(static_cast<uint8_t>(v));
    } else if (v <= 0xffff) {
      byte(0xcd);
      be<uint16_t>(static_cast<uint16_t>(v));
    } else if (v <= 0xffffffffu) {
      byte(0xce);
      be<uint32_t>(static_cast<uint32_t>(v));
    } else {
      byte(0xcf);
      be<uint64_t>(v);
    }
  }
  static size_t uint_size(uint64_t v) {
    return v < 128 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
  }
  // Bytes of a length header: str (fix up to 31, then 8/16/32-bit), bin (8/16/32-bit),
  // array (fix up to 15, then 16/32-bit).
  static size_t str_header(size_t n) { return n <= 31 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }
  static size_t bin_header_size(size_t n) { return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }
  static size_t array_header(size_t n) { return n <= 15 ? 1 : n <= 0xffff ? 3 : 5; }

  // ExtType 1 holding packb((shape, dtype.name, bytes)), as Flax's _ndarray_to_bytes.
  void ndarray(const Shape& shape, DType dtype, const uint8_t* data, size_t nbytes) {
    std::string_view name = dtype_name(dtype);
    size_t payload = 1 + array_header(shape.size()) + str_header(name.size()) + name.size() +
                     bin_header_size(nbytes) + nbytes;
    for (int64_t d : shape) payload += uint_size(static_cast<uint64_t>(d));
    ext_header(1, payload);
    byte(0x93);
    array(shape.size());
    for (int64_t d : shape) uint(static_cast<uint64_t>(d));
    str(name);
    bin_header(nbytes);
    raw(data, nbytes);
  }

 private:
  static constexpr size_t kBuf = 1 << 16, kDirect = 1 << 12;
  const ByteSink& sink_;
  std::string buf_;
};

void write_leaf(MsgWriter& w, const Array& a, size_t max_chunk) {
  const auto* data = static_cast<const uint8_t*>(a.raw());
  if (a.nbytes() <= max_chunk) {
    w.ndarray(a.shape(), a.dtype(), data, a.nbytes());
    return;
  }
  // Flax's _chunk: {'__msgpack_chunked_array__': True, 'shape': {'0': d0, ...}, 'chunks': {...}}
  size_t item = itemsize(a.dtype());
  size_t per_chunk = std::max<size_t>(1, max_chunk / item);
  size_t total = static_cast<size_t>(a.size());
  size_t n_chunks = (total + per_chunk - 1) / per_chunk;
  w.map(3);
  w.str(kChunkMarker);
  w.byte(0xc3);
  w.str("shape");
  w.map(a.ndim());
  for (size_t i = 0; i < a.ndim(); ++i) {
    w.str(std::to_string(i));
    w.uint(static_cast<uint64_t>(a.shape()[i]));
  }
  w.str("chunks");
  w.map(n_chunks);
  for (size_t c = 0; c < n_chunks; ++c) {
    size_t len = std::min(per_chunk, total - c * per_chunk);
    w.str(std::to_string(c));
    w.ndarray(Shape{static_cast<int64_t>(len)}, a.dtype(), data + c * per_chunk * item, len * item);
  }
}

void write_node(MsgWriter& w, const Tree& t, size_t max_chunk) {
  if (t.is_leaf()) return write_leaf(w, t.array(), max_chunk);
  w.map(t.size());
  for (const auto& [k, v] : t.items()) {
    w.str(k);
    write_node(w, v, max_chunk);
  }
}

// ---- reader --------------------------------------------------------------------------------

class MsgReader {
 public:
  MsgReader(std::span<const uint8_t> b, const std::string& context)
      : begin_(b.data()), p_(b.data()), end_(b.data() + b.size()), context_(context) {}

  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw SerializationError("from_bytes: " + shown(path) + ": " + msg + context_ + " (byte " +
                             std::to_string(p_ - begin_) + ")");
  }
  bool at_end() const { return p_ == end_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  // Every length read from the input is checked here, against the bytes left, before use.
  const uint8_t* take(size_t n, const std::string& path) {
    if (remaining() < n)
      fail(path, "truncated input (" + std::to_string(n) + " bytes needed, " +
                     std::to_string(remaining()) + " left)");
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint8_t byte(const std::string& path) { return *take(1, path); }
  uint64_t be(size_t n, const std::string& path) {
    const uint8_t* b = take(n, path);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | b[i];
    return v;
  }
  uint8_t peek(const std::string& path) {
    if (p_ == end_) fail(path, "truncated input");
    return *p_;
  }

  // A length-prefixed str or bin (dtype names are str; array bytes are bin, or str in files
  // written by msgpack-python without use_bin_type).
  std::string_view bytes(const std::string& path, const char* what) {
    uint8_t t = byte(path);
    size_t n;
    if ((t & 0xe0) == 0xa0)
      n = t & 0x1f;
    else if (t == 0xd9 || t == 0xc4)
      n = be(1, path);
    else if (t == 0xda || t == 0xc5)
      n = be(2, path);
    else if (t == 0xdb || t == 0xc6)
      n = be(4, path);
    else
      fail(path, std::string("expected a str or bin for the ") + what);
    return {reinterpret_cast<const char*>(take(n, path)), n};
  }
  // A non-negative integer (shape dimensions).
  uint64_t uint(const std::string& path, const char* what) {
    uint8_t t = byte(path);
    if (t < 0x80) return t;
    if (t >= 0xcc && t <= 0xcf) return be(size_t{1} << (t - 0xcc), path);
    if (t >= 0xd0 && t <= 0xd3) {
      int64_t v = signed_int(t, path);
      if (v >= 0) return static_cast<uint64_t>(v);
    }
    fail(path, std::string("expected a non-negative integer for the ") + what);
  }
  int64_t signed_int(uint8_t t, const std::string& path) {
    size_t n = size_t{1} << (t - 0xd0);
    uint64_t v = be(n, path);
    if (n < 8 && (v >> (8 * n - 1))) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  // Returns the element count of an array (0x90 fixarray, 0xdc, 0xdd) or -1.
  int64_t array_header(const std::string& path) {
    uint8_t t = byte(path);
    if ((t & 0xf0) == 0x90) return t & 0x0f;
    if (t == 0xdc) return static_cast<int64_t>(be(2, path));
    if (t == 0xdd) return static_cast<int64_t>(be(4, path));
    return -1;
  }

 private:
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  std::string context_;
};

Array scalar_int(int64_t v, MsgReader& r, const std::string& path) {
  if (v >= INT32_MIN && v <= INT32_MAX) return Array(static_cast<int32_t>(v));
  if (v >= 0 && v <= static_cast<int64_t>(UINT32_MAX))
    return Array::from({}, std::vector<uint32_t>{static_cast<uint32_t>(v)});
  r.fail(path, "integer " + std::to_string(v) + " does not fit int32 or uint32");
}

// Appends a dimension read from a file. The product of the nonzero dimensions stays below 2^60,
// so numel(), strides and byte counts cannot overflow (a 0 dimension must not hide a huge one).
void push_dim(Shape& shape, uint64_t d, uint64_t& nonzero, MsgReader& r, const std::string& path) {
  if (shape.size() == Shape::kMaxRank) r.fail(path, "rank exceeds flaxpp's maximum of 8");
  if (d > 0 && (__builtin_mul_overflow(nonzero, d, &nonzero) || nonzero >= (uint64_t{1} << 60)))
    r.fail(path, "shape dimension " + std::to_string(d) + " makes the array too large");
  shape.push_back(static_cast<int64_t>(d));
}

// An array with no elements reads no bytes, so its other dimensions are not bounded by the input;
// code that walks a shape (to_json writes "[]" per row) would loop over them. Cap them.
void check_empty_extent(const Shape& shape, uint64_t nonzero, MsgReader& r,
                        const std::string& path) {
  if (numel(shape) == 0 && nonzero > kMaxEmptyExtent)
    r.fail(path, "shape " + to_string(shape) +
                     " has no elements, but its nonzero dimensions multiply to " +
                     std::to_string(nonzero) + " (more than 2^24, the most flaxpp reads)");
}

// The payload of ExtType 1 / 3: packb((shape, dtype_name, raw_bytes)).
Array decode_ndarray(std::span<const uint8_t> payload, const std::string& path) {
  MsgReader r(payload, " in an ndarray payload");
  if (r.array_header(path) != 3) r.fail(path, "expected a (shape, dtype, bytes) triple");
  int64_t rank = r.array_header(path);
  if (rank < 0) r.fail(path, "expected the shape as an array");
  if (rank > static_cast<int64_t>(Shape::kMaxRank))
    r.fail(path, "rank " + std::to_string(rank) + " exceeds flaxpp's maximum of 8");
  Shape shape;
  uint64_t nonzero = 1;
  for (int64_t i = 0; i < rank; ++i) push_dim(shape, r.uint(path, "shape"), nonzero, r, path);
  check_empty_extent(shape, nonzero, r, path);
  std::string name(r.bytes(path, "dtype name"));
  DType dtype;
  try {
    dtype = dtype_from_name(name);
  } catch (const std::exception&) {
    r.fail(path, "dtype '" + name + "' is not supported (flaxpp has float32, int32, uint32, bool)");
  }
  std::string_view data = r.bytes(path, "array bytes");
  size_t want = checked_nbytes(shape, dtype, "from_bytes");
  if (data.size() != want)
    r.fail(path, "array bytes: " + std::to_string(data.size()) + " bytes, but " + name +
                     to_string(shape) + " needs " + std::to_string(want));
  if (!r.at_end()) r.fail(path, "trailing bytes");
  Array a = Array::from_bytes(shape, dtype, data.data());
  if (dtype == DType::bool_) {  // numpy bools are 0/1 bytes; keep that invariant
    uint8_t* b = a.mutable_data<uint8_t>();
    for (int64_t i = 0; i < a.size(); ++i) b[i] = b[i] != 0;
  }
  return a;
}

Tree unchunk(const Tree& d, const std::string& path, MsgReader& r);

Tree decode(MsgReader& r, std::string& path, int depth = 0) {
  if (depth > 256) r.fail(path, "nesting deeper than 256 levels");
  uint8_t t = r.byte(path);
  // maps
  if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
    size_t n = (t & 0xf0) == 0x80 ? (t & 0x0f) : r.be(t == 0xde ? 2 : 4, path);
    // Check the count against the bytes left before reserving, or nested maps declaring 2^32
    // entries allocate at every level. An entry takes >= 3 bytes (a non-empty fixstr key, a
    // 1-byte value); fewer than 1 byte each is certainly truncated.
    if (n > r.remaining())
      r.fail(path, "truncated input (a map of " + std::to_string(n) + " entries, " +
                       std::to_string(r.remaining()) + " bytes left)");
    std::vector<Tree::Item> items;
    items.reserve(std::min(n, r.remaining() / 3));
    bool chunked = false;
    size_t len = path.size();
    for (size_t i = 0; i < n; ++i) {
      uint8_t kt = r.peek(path);
      if (!((kt & 0xe0) == 0xa0 || (kt >= 0xd9 && kt <= 0xdb)))
        r.fail(path, "a map key is not a string");
      std::string key(r.bytes(path, "key"));
      if (key.empty() || key.find('/') != key.npos)
        r.fail(path, "key '" + key + "' is empty or contains '/' (paths use '/')");
      chunked = chunked || key == kChunkMarker;
      if (len) path += '/';
      path += key;
      Tree v = decode(r, path, depth + 1);
      path.resize(len);
      items.emplace_back(std::move(key), std::move(v));
    }
    Tree dict;
    try {
      dict = Tree::dict(std::move(items));
    } catch (const std::invalid_argument& e) {  // duplicate keys
      r.fail(path, e.what());
    }
    return chunked ? unchunk(dict, path, r) : dict;
  }
  // ExtType: fixext 1/2/4/8/16, ext 8/16/32
  if ((t >= 0xd4 && t <= 0xd8) || (t >= 0xc7 && t <= 0xc9)) {
    size_t n = t >= 0xd4 ? size_t{1} << (t - 0xd4) : r.be(size_t{1} << (t - 0xc7), path);
    auto code = static_cast<int8_t>(r.byte(path));
    const uint8_t* p = r.take(n, path);
    if (code == 1 || code == 3) return Tree(decode_ndarray({p, n}, path));
    r.fail(path, "ExtType " + std::to_string(code) + (code == 2 ? " (complex)" : "") +
                     " is not supported");
  }
  // Python scalars in a state dict
  if (t == 0xc2 || t == 0xc3) return Tree(Array(t == 0xc3));
  if (t < 0x80) return Tree(Array(static_cast<int32_t>(t)));
  if (t >= 0xe0) return Tree(Array(static_cast<int32_t>(static_cast<int8_t>(t))));
  if (t >= 0xcc && t <= 0xcf) {
    uint64_t v = r.be(size_t{1} << (t - 0xcc), path);
    if (v > UINT32_MAX) r.fail(path, "integer " + std::to_string(v) + " does not fit uint32");
    return Tree(scalar_int(static_cast<int64_t>(v), r, path));
  }
  if (t >= 0xd0 && t <= 0xd3) return Tree(scalar_int(r.signed_int(t, path), r, path));
  if (t == 0xca) {
    uint32_t bits = static_cast<uint32_t>(r.be(4, path));
    return Tree(Array(std::bit_cast<float>(bits)));
  }
  if (t == 0xcb) return Tree(Array(static_cast<float>(std::bit_cast<double>(r.be(8, path)))));
  const char* kind = t == 0xc0                                          ? "nil (None)"
                     : ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd)   ? "an array (list)"
                     : ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb)) ? "a str"
                     : (t >= 0xc4 && t <= 0xc6)                         ? "a bin"
                                                                        : "an invalid byte";
  r.fail(path, std::string("unexpected msgpack ") + kind + " (tree nodes are maps and arrays)");
}

// Flax's _unchunk: concatenate chunks '0'..'n-1' and reshape to shape '0'..'k-1'.
Tree unchunk(const Tree& d, const std::string& path, MsgReader& r) {
  const Tree* shape_t = d.find("shape");
  const Tree* chunks_t = d.find("chunks");
  if (!shape_t || !chunks_t || shape_t->is_leaf() || chunks_t->is_leaf())
    r.fail(path, "chunked array without 'shape' and 'chunks' maps");
  Shape shape;
  uint64_t nonzero = 1;
  for (size_t i = 0; i < shape_t->size(); ++i) {
    const Tree* dim = shape_t->find(std::to_string(i));
    if (!dim || !dim->is_leaf() || dim->array().ndim() != 0 ||
        (dim->array().dtype() != DType::int32 && dim->array().dtype() != DType::uint32) ||
        dim->array().item<int64_t>() < 0)
      r.fail(path, "chunked array: bad 'shape' entry " + std::to_string(i));
    push_dim(shape, static_cast<uint64_t>(dim->array().item<int64_t>()), nonzero, r, path);
  }
  check_empty_extent(shape, nonzero, r, path);
  std::vector<const Array*> parts;
  size_t bytes = 0;
  for (size_t i = 0; i < chunks_t->size(); ++i) {
    const Tree* c = chunks_t->find(std::to_string(i));
    if (!c || !c->is_leaf() || c->array().ndim() != 1 ||
        (i > 0 && c->array().dtype() != parts[0]->dtype()))
      r.fail(path, "chunked array: bad chunk " + std::to_string(i));
    parts.push_back(&c->array());
    bytes += c->array().nbytes();
  }
  if (parts.empty()) r.fail(path, "chunked array without chunks");
  DType dtype = parts[0]->dtype();
  size_t want = checked_nbytes(shape, dtype, "from_bytes");
  if (bytes != want)
    r.fail(path, "chunked array: chunks hold " + std::to_string(bytes) + " bytes, shape " +
                     to_string(shape) + " needs " + std::to_string(want));
  Array a = Array::empty(shape, dtype, "from_bytes");
  auto* out = static_cast<uint8_t*>(a.mutable_raw());
  for (const Array* p : parts) {
    std::memcpy(out, p->raw(), p->nbytes());
    out += p->nbytes();
  }
  return Tree(a);
}

}  // namespace

void write_msgpack(const Tree& tree, const ByteSink& sink, size_t max_chunk_size) {
  MsgWriter w(sink);
  write_node(w, tree, max_chunk_size);
  w.flush();
}

std::vector<uint8_t> to_bytes(const Tree& tree, size_t max_chunk_size) {
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(param_bytes(tree)) + 4096);
  write_msgpack(
      tree, [&](const char* p, size_t n) { out.insert(out.end(), p, p + n); }, max_chunk_size);
  return out;
}

Tree from_bytes(std::span<const uint8_t> bytes) {
  MsgReader r(bytes, "");
  std::string path;
  Tree t = decode(r, path);
  if (!r.at_end()) r.fail(path, "trailing bytes after the tree");
  return t;
}

Tree from_bytes(const Tree& target, std::span<const uint8_t> bytes, const RestoreOptions& opts) {
  return from_state_dict(target, from_bytes(bytes), opts);
}

}  // namespace flaxpp
