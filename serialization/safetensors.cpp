// safetensors (Hugging Face's tensor file format), read and written as its reference
// implementation (huggingface/safetensors, safetensors/src/tensor.rs) defines it:
//
//   [u64 little-endian N][N bytes of JSON header, padded with spaces to a multiple of 8][data]
//   header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [2, 3],
//            "data_offsets": [begin, end]}, ...}     offsets relative to the start of the data
//
// Writing follows the reference byte for byte: tensors ordered by dtype alignment (largest
// first) then by name, offsets assigned in that order with no gaps, the header compact JSON
// ("__metadata__" first, then the tensors in offset order). Reading checks everything the
// reference checks and reports the tensor and the byte range at fault: the header length against
// the file, the JSON, each entry's fields, each tensor's byte count against its dtype and shape
// (overflow-checked), the ranges against each other (no overlap, no gap, starting at 0) and the
// last range against the end of the file.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/mman.h>

#include "serialization/serialization.hpp"

namespace flaxpp {

namespace {

using nlohmann::json;

// The reference's limit on the header (MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeader = 100'000'000;
constexpr size_t kMaxRank = 8;  // as the JSON and msgpack readers

// safetensors' dtype names in the reference's enum order, which is increasing alignment: the
// writer sorts by it (descending). `supported` are the ones flaxpp arrays hold today.
struct DtypeInfo {
  const char* name;
  size_t size;
  bool supported;
  DType dtype;
};
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1, true, DType::bool_},     {"U8", 1, false, DType::bool_},
    {"I8", 1, false, DType::bool_},      {"F8_E5M2", 1, false, DType::bool_},
    {"F8_E4M3", 1, false, DType::bool_}, {"I16", 2, false, DType::bool_},
    {"U16", 2, false, DType::bool_},     {"F16", 2, false, DType::bool_},
    {"BF16", 2, false, DType::bool_},    {"I32", 4, true, DType::int32},
    {"U32", 4, true, DType::uint32},     {"F32", 4, true, DType::float32},
    {"F64", 8, false, DType::bool_},     {"I64", 8, false, DType::bool_},
    {"U64", 8, false, DType::bool_},
};

size_t rank_of(DType d) {
  for (size_t i = 0; i < std::size(kDtypes); ++i)
    if (kDtypes[i].supported && kDtypes[i].dtype == d) return i;
  throw SerializationError(std::string("to_safetensors: no safetensors dtype for ") +
                           dtype_name(d));
}

std::string supported_names() {
  std::string s;
  for (const auto& d : kDtypes)
    if (d.supported) s += std::string(s.empty() ? "" : ", ") + d.name;
  return s;
}

[[noreturn]] void fail(const std::string& msg) {
  throw SerializationError("from_safetensors: " + msg);
}

std::string range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// ---- writing ----------------------------------------------------------------------------------

struct Entry {
  std::string name;
  Array array;
  size_t rank;
};

std::vector<Entry> entries_of(const Tree& tree, char separator) {
  if (tree.is_leaf())
    throw SerializationError(
        "to_safetensors: a safetensors file holds named tensors: the root must be a dict, got an "
        "array");
  std::vector<Entry> entries;
  const std::string sep(1, separator);
  for (const auto& [path, leaf] : flatten_dict(tree, "/")) {
    // Keys are joined with `separator`; one that contains it could not be split back.
    std::string name;
    size_t start = 0;
    while (true) {
      size_t slash = path.find('/', start);
      std::string key = path.substr(start, slash == std::string::npos ? slash : slash - start);
      if (key.find(separator) != std::string::npos)
        throw SerializationError("to_safetensors: " + path + ": key '" + key +
                                 "' contains the separator '" + sep +
                                 "' (choose another with SafetensorsOptions::separator)");
      name += (name.empty() ? "" : sep) + key;
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    entries.push_back({std::move(name), leaf, rank_of(leaf.dtype())});
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.name < b.name;  // bytewise, as Rust's String order
  });
  return entries;
}

}  // namespace

void write_safetensors(const Tree& tree, const ByteSink& sink, const SafetensorsOptions& opts) {
  std::vector<Entry> entries = entries_of(tree, opts.separator);
  std::string header = "{";
  if (!opts.metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : opts.metadata) {
      header += (first ? "" : ",") + json(k).dump() + ":" + json(v).dump();
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Array& a = entries[i].array;
    if (i || !opts.metadata.empty()) header += ",";
    header += json(entries[i].name).dump() + ":{\"dtype\":\"" + kDtypes[entries[i].rank].name +
              "\",\"shape\":[";
    for (size_t d = 0; d < a.ndim(); ++d) header += (d ? "," : "") + std::to_string(a.shape()[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + a.nbytes()) + "]}";
    offset += a.nbytes();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  sink(reinterpret_cast<const char*>(length), 8);
  sink(header.data(), header.size());
  for (const auto& e : entries) sink(static_cast<const char*>(e.array.raw()), e.array.nbytes());
}

std::vector<uint8_t> to_safetensors(const Tree& tree, const SafetensorsOptions& opts) {
  std::vector<uint8_t> out;
  write_safetensors(
      tree, [&](const char* p, size_t n) { out.insert(out.end(), p, p + n); }, opts);
  return out;
}

// ---- reading ----------------------------------------------------------------------------------

namespace detail {

Safetensors read_safetensors(std::span<const uint8_t> bytes, char separator, bool release_pages) {
  const uint64_t size = bytes.size();
  if (size < 8)
    fail("truncated input: " + std::to_string(size) +
         " bytes, but the header length alone takes 8");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{bytes[i]} << (8 * i);
  if (n > kMaxHeader)
    fail("the header length " + std::to_string(n) + " exceeds the limit of " +
         std::to_string(kMaxHeader) + " bytes");
  if (n > size - 8)
    fail("truncated input: the header length is " + std::to_string(n) + " bytes, but only " +
         std::to_string(size - 8) + " follow it");
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);

  // Parse, refusing a key given twice in one object (nlohmann would keep the last silently).
  std::vector<std::set<std::string>> open;
  std::string duplicate;
  json header;
  try {
    header = json::parse(text, [&](int, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) open.emplace_back();
      if (event == json::parse_event_t::object_end) open.pop_back();
      if (event == json::parse_event_t::key && !open.empty() &&
          !open.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const json::exception& e) {
    fail("the header (bytes " + range(8, data_start) + ") is not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) fail("the header names '" + duplicate + "' twice");
  if (!header.is_object()) fail("the header is not a JSON object");

  Safetensors out;
  struct Info {
    std::string name;
    DType dtype;
    size_t dsize;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Info> infos;
  auto non_negative = [&](const json& v, const std::string& what) -> uint64_t {
    if (!v.is_number_unsigned()) fail(what + " must be a non-negative integer, got " + v.dump());
    return v.get<uint64_t>();
  };
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail("__metadata__ must be an object of strings, got " + entry.dump());
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail("__metadata__: '" + k + "' must be a string, got " + v.dump());
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      fail(where + ": expected {\"dtype\", \"shape\", \"data_offsets\"}, got " + entry.dump());
    const json& dt = entry["dtype"];
    const DtypeInfo* info = nullptr;
    for (const auto& d : kDtypes)
      if (dt.is_string() && dt.get<std::string>() == d.name) info = &d;
    if (!info) fail(where + ": unknown dtype " + dt.dump());
    if (!info->supported)
      fail(where + ": dtype " + info->name + " is not supported (flaxpp reads " +
           supported_names() + ")");
    const json& sh = entry["shape"];
    if (!sh.is_array()) fail(where + ": shape must be a list, got " + sh.dump());
    if (sh.size() > kMaxRank)
      fail(where + ": rank " + std::to_string(sh.size()) + " exceeds the limit of " +
           std::to_string(kMaxRank));
    Shape shape;
    uint64_t count = 1;
    bool overflow = false;
    for (const auto& d : sh) {
      uint64_t v = non_negative(d, where + ": a dimension");
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) overflow = true;
      shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && count > std::numeric_limits<uint64_t>::max() / v) overflow = true;
      count *= v;
    }
    if (overflow || count > std::numeric_limits<uint64_t>::max() / info->size)
      fail(where + ": shape " + sh.dump() + " of " + info->name + " overflows a 64-bit byte count");
    const json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      fail(where + ": data_offsets must be [begin, end], got " + off.dump());
    uint64_t begin = non_negative(off[0], where + ": data_offsets"),
             end = non_negative(off[1], where + ": data_offsets");
    if (end < begin) fail(where + ": data_offsets " + off.dump() + " end before they begin");
    if (end - begin != count * info->size)
      fail(where + ": data_offsets " + off.dump() + " hold " + std::to_string(end - begin) +
           " bytes, but " + info->name + " " + sh.dump() + " needs " +
           std::to_string(count * info->size));
    infos.push_back({name, info->dtype, info->size, std::move(shape), begin, end});
  }
  // The ranges, in order, must tile the data exactly.
  std::stable_sort(infos.begin(), infos.end(), [](const Info& a, const Info& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    const Info& t = infos[i];
    const std::string at = "tensor '" + t.name + "' (bytes " +
                           range(data_start + t.begin, data_start + t.end) + " of the file)";
    if (t.begin < expect)
      fail(at + " overlaps tensor '" + infos[i - 1].name + "' (bytes " +
           range(data_start + infos[i - 1].begin, data_start + infos[i - 1].end) + ")");
    if (t.begin > expect)
      fail(at + " leaves bytes " + range(data_start + expect, data_start + t.begin) + " unused");
    expect = t.end;
  }
  if (expect != data_size)
    fail("the tensors end at byte " + std::to_string(data_start + expect) + ", but the file has " +
         std::to_string(size) + " bytes" +
         (expect > data_size ? " (truncated input)" : " (trailing bytes)"));

  // Copy each tensor out; a file mapping's pages are given back as soon as they are copied, so
  // loading needs the tree's size in memory, not twice it.
  const long page = ::sysconf(_SC_PAGESIZE);
  std::vector<std::pair<std::string, Array>> flat;
  for (const Info& t : infos) {
    const uint8_t* src = bytes.data() + data_start + t.begin;
    if (t.dtype == DType::bool_)
      for (uint64_t i = 0; i < t.end - t.begin; ++i)
        if (src[i] > 1)
          fail("tensor '" + t.name + "': BOOL byte " + std::to_string(data_start + t.begin + i) +
               " is " + std::to_string(src[i]) + ", not 0 or 1");
    if (!release_pages || page <= 0) {
      flat.emplace_back(t.name, Array::from_bytes(t.shape, t.dtype, src));
      continue;
    }
    // Copied a few MiB at a time, each piece's whole pages released right after it.
    Array a = Array::empty(t.shape, t.dtype);
    auto* dst = static_cast<uint8_t*>(a.mutable_raw());
    const uint64_t total = t.end - t.begin, piece = uint64_t{4} << 20;
    for (uint64_t done = 0; done < total; done += piece) {
      const uint64_t len = std::min(piece, total - done);
      std::memcpy(dst + done, src + done, len);
      auto lo = (reinterpret_cast<uintptr_t>(src + done) + page - 1) / page * page;
      auto hi = reinterpret_cast<uintptr_t>(src + done + len) / page * page;
      if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
    }
    flat.emplace_back(t.name, std::move(a));
  }
  // Names split at the separator into nested dicts, in the file's data order.
  std::vector<std::pair<std::string, Array>> nested;
  for (auto& [name, a] : flat) {
    std::string path;
    size_t start = 0;
    while (true) {
      size_t at = name.find(separator, start);
      std::string key = name.substr(start, at == std::string::npos ? at : at - start);
      if (key.empty())
        fail("tensor '" + name + "': an empty key between separators '" +
             std::string(1, separator) + "'");
      if (key.find('/') != std::string::npos && separator != '/')
        fail("tensor '" + name + "': key '" + key + "' contains '/' (tree paths use '/')");
      path += (path.empty() ? "" : "/") + key;
      if (at == std::string::npos) break;
      start = at + 1;
    }
    nested.emplace_back(std::move(path), std::move(a));
  }
  try {
    out.tree = unflatten_dict(nested, "/");
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  return out;
}

}  // namespace detail

Safetensors read_safetensors(std::span<const uint8_t> bytes, char separator) {
  return detail::read_safetensors(bytes, separator, false);
}

Tree from_safetensors(std::span<const uint8_t> bytes, char separator) {
  return detail::read_safetensors(bytes, separator, false).tree;
}

Tree from_safetensors(const Tree& target, std::span<const uint8_t> bytes,
                      const RestoreOptions& opts, char separator) {
  return from_state_dict(target, from_safetensors(bytes, separator), opts);
}

}  // namespace flaxpp
