// Restoring against a target (strict from_state_dict) and atomic checkpoint files.
// The formats: msgpack.cpp, json_read.cpp and json_write.cpp.
#include "serialization/serialization.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>

#include "serialization/checksum.hpp"

namespace flaxpp {

namespace detail {
// safetensors.cpp: `release_pages` when `bytes` is a private file mapping whose pages may be
// dropped (madvise) once copied.
Safetensors read_safetensors(std::span<const uint8_t> bytes, char separator, bool release_pages);
}  // namespace detail

namespace {

std::string shown(const std::string& path) { return path.empty() ? "<root>" : path; }

std::string describe(const Tree& t) {
  if (t.is_leaf())
    return std::string("array ") + dtype_name(t.array().dtype()) + to_string(t.array().shape());
  std::string s;
  for (const auto& k : t.keys()) s += (s.empty() ? "" : ", ") + k;
  return "dict with keys [" + s + "]";
}

Tree restore(const Tree& target, const Tree& state, std::string& path, const RestoreOptions& o) {
  auto fail = [&](const std::string& msg) {
    throw SerializationError("restore: " + shown(path) + ": " + msg);
  };
  if (target.is_leaf() != state.is_leaf())
    fail(describe(state) + " in file, " + describe(target) + " in target");
  if (target.is_leaf()) {
    const Array &a = state.array(), &t = target.array();
    if (a.shape() != t.shape())
      fail("shape " + to_string(a.shape()) + " in file, " + to_string(t.shape()) + " in target");
    if (a.dtype() != t.dtype())
      fail(std::string("dtype ") + dtype_name(a.dtype()) + " in file, " + dtype_name(t.dtype()) +
           " in target");
    return state;
  }
  size_t len = path.size();
  auto sub = [&](const std::string& k) {
    path.resize(len);
    if (len) path += '/';
    path += k;
  };
  for (const auto& [k, v] : target.items()) {
    if (!state.find(k)) {
      sub(k);
      fail("missing in file (target has " + describe(v) + ")");
    }
  }
  if (!o.allow_extra) {
    for (const auto& [k, v] : state.items()) {
      if (!target.find(k)) {
        sub(k);
        fail("unexpected in file (" + describe(v) +
             ", not in target; RestoreOptions{.allow_extra = true} ignores it)");
      }
    }
  }
  std::vector<Tree> values;
  values.reserve(target.size());
  for (const auto& [k, v] : target.items()) {
    sub(k);
    values.push_back(restore(v, state[k], path, o));
  }
  path.resize(len);
  return Tree::rebuild(target, std::move(values));
}

[[noreturn]] void io_error(const char* op, const std::filesystem::path& p, const std::string& what,
                           int err) {
  throw SerializationError(std::string(op) + ": " + p.string() + ": " + what +
                           (err ? std::string(": ") + std::strerror(err) : std::string()));
}

// Writes everything, retrying short writes and EINTR.
void write_all(int fd, const char* p, size_t n, const std::filesystem::path& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      io_error("save", path, "write failed", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Creates `.NAME.tmp-PID-XXXXXXXX` beside `path` (O_EXCL); returns its fd and sets tmp.
int create_temp(const std::filesystem::path& path, std::filesystem::path& tmp) {
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::random_device rd;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 16; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08x", static_cast<int>(::getpid()), rd());
    tmp = dir / ("." + path.filename().string() + suffix);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) io_error("save", path, "cannot create a temporary file in " + dir.string(), errno);
  return fd;
}

void finish_temp(int& fd, const std::filesystem::path& path) {
  if (::fsync(fd) != 0) io_error("save", path, "fsync failed", errno);
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) io_error("save", path, "close failed", errno);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

struct Meta {
  bool present = false;
  bool has_checksum = false;
  uint64_t bytes = 0;
  std::string crc32c;
  std::vector<std::pair<std::string, std::string>> dtypes;
};

Meta read_meta(const std::filesystem::path& path);

}  // namespace

std::filesystem::path meta_path(const std::filesystem::path& path) {
  std::filesystem::path m = path;
  m += ".meta";
  return m;
}

std::vector<std::pair<std::string, std::string>> json_dtype_notes(const Tree& tree) {
  std::vector<std::pair<std::string, std::string>> notes;
  for (const auto& [path, a] : flatten_dict(tree)) {
    bool note = false;
    if (a.size() == 0) {
      // Read back: int32, shape up to and including the first 0 dimension.
      Shape read;
      for (int64_t d : a.shape()) {
        read.push_back(d);
        if (d == 0) break;
      }
      note = a.dtype() != DType::int32 || read != a.shape();
    } else if (a.dtype() == DType::uint32) {
      const uint32_t* p = a.data<uint32_t>();
      note = std::all_of(p, p + a.size(), [](uint32_t v) { return v <= INT32_MAX; });
    }
    if (note) notes.emplace_back(path, std::string(dtype_name(a.dtype())) + to_string(a.shape()));
  }
  return notes;
}

namespace {

// "uint32(2,)" -> (uint32, (2,)).
std::pair<DType, Shape> parse_note(const std::string& path, const std::string& note) {
  auto bad = [&] {
    throw SerializationError("dtypes: " + shown(path) + ": '" + note +
                             "' is not <dtype>(<dims>), e.g. uint32(2,)");
  };
  size_t open = note.find('(');
  if (open == std::string::npos || note.back() != ')') bad();
  DType dtype{};
  try {
    dtype = dtype_from_name(note.substr(0, open));
  } catch (const std::invalid_argument&) {
    bad();
  }
  Shape shape;
  std::string dims = note.substr(open + 1, note.size() - open - 2);
  size_t i = 0;
  while (i < dims.size()) {
    size_t j = dims.find(',', i);
    if (j == std::string::npos) j = dims.size();
    std::string d = dims.substr(i, j - i);
    if (d.empty() || d.size() > 18 || !std::all_of(d.begin(), d.end(), ::isdigit)) bad();
    if (shape.size() == Shape::kMaxRank) bad();
    shape.push_back(std::stoll(d));
    i = j + 1;
  }
  checked_numel(shape, "dtypes");
  return {dtype, shape};
}

}  // namespace

Tree apply_json_dtype_notes(const Tree& tree,
                            const std::vector<std::pair<std::string, std::string>>& notes) {
  Tree out = tree;
  for (const auto& [path, note] : notes) {
    auto [dtype, shape] = parse_note(path, note);
    const Tree* leaf = nullptr;
    try {
      leaf = &out.at(path);
    } catch (const std::exception&) {
    }
    if (!leaf || !leaf->is_leaf())
      throw SerializationError("dtypes: " + shown(path) + ": no such array in the file");
    const Array& a = leaf->array();
    if (a.size() != numel(shape))
      throw SerializationError("dtypes: " + shown(path) + ": " + note + " has " +
                               std::to_string(numel(shape)) + " elements, the file's array " +
                               std::to_string(a.size()));
    Array fixed = Array::empty(shape, dtype, "dtypes");
    if (a.size()) {
      std::vector<double> v = a.to_double();
      double lo = dtype == DType::int32 ? INT32_MIN : 0;
      double hi = dtype == DType::int32 ? INT32_MAX : dtype == DType::uint32 ? UINT32_MAX : 1;
      for (double x : v)
        if (dtype != DType::float32 && (x < lo || x > hi || x != std::floor(x)))
          throw SerializationError("dtypes: " + shown(path) + ": value " + std::to_string(x) +
                                   " does not fit " + dtype_name(dtype));
      if (dtype != DType::float32 && a.dtype() == DType::float32)
        throw SerializationError("dtypes: " + shown(path) + ": float values for a " +
                                 dtype_name(dtype) + " array");
      for (size_t i = 0; i < v.size(); ++i) switch (dtype) {
          case DType::float32: fixed.mutable_data<float>()[i] = static_cast<float>(v[i]); break;
          case DType::int32: fixed.mutable_data<int32_t>()[i] = static_cast<int32_t>(v[i]); break;
          case DType::uint32:
            fixed.mutable_data<uint32_t>()[i] = static_cast<uint32_t>(v[i]);
            break;
          case DType::bool_: fixed.mutable_data<uint8_t>()[i] = v[i] != 0; break;
        }
    }
    out = out.set(path, Tree(fixed));
  }
  return out;
}

Tree from_state_dict(const Tree& target, const Tree& state, const RestoreOptions& opts) {
  std::string path;
  return restore(target, state, path, opts);
}

Format format_of(const std::filesystem::path& path) {
  auto ext = path.extension().string();
  if (ext == ".json") return Format::json;
  if (ext == ".msgpack") return Format::msgpack;
  if (ext == ".safetensors") return Format::safetensors;
  throw SerializationError(path.string() + ": unknown checkpoint format '" + ext +
                           "' (use .json, .msgpack or .safetensors)");
}

void save(const std::filesystem::path& path, const Tree& tree, const SaveOptions& opts) {
  Format format = format_of(path);
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  auto notes = format == Format::json ? json_dtype_notes(tree)
                                      : std::vector<std::pair<std::string, std::string>>{};
  std::filesystem::path tmp, meta_tmp;
  int fd = create_temp(path, tmp), meta_fd = -1;
  try {
    std::vector<char> buf;
    buf.reserve(1 << 20);
    uint32_t crc = 0;
    uint64_t total = 0;
    auto emit = [&](const char* p, size_t n) {
      if (opts.checksum) crc = crc32c(p, n, crc);
      total += n;
      write_all(fd, p, n, path);
    };
    // Small pieces are gathered; large ones (array bytes) go straight to the file.
    ByteSink sink = [&](const char* p, size_t n) {
      if (buf.size() + n > buf.capacity()) {
        emit(buf.data(), buf.size());
        buf.clear();
      }
      if (n >= buf.capacity())
        emit(p, n);
      else
        buf.insert(buf.end(), p, p + n);
    };
    try {
      if (format == Format::json)
        write_json(tree, sink, opts.json);
      else if (format == Format::safetensors)
        write_safetensors(tree, sink, opts.safetensors);
      else
        write_msgpack(tree, sink, opts.max_chunk_size);
    } catch (const SerializationError& e) {
      if (std::string(e.what()).rfind("save: ", 0) == 0) throw;
      io_error("save", path, e.what(), 0);
    }
    emit(buf.data(), buf.size());
    finish_temp(fd, path);
    std::string meta;
    if (opts.checksum || !notes.empty()) {
      nlohmann::ordered_json m;
      m["flaxpp_meta"] = 1;
      m["bytes"] = total;
      if (opts.checksum) m["crc32c"] = hex32(crc);
      if (!notes.empty()) {
        nlohmann::ordered_json d = nlohmann::ordered_json::object();
        for (const auto& [p, n] : notes) d[p] = n;
        m["dtypes"] = d;
      }
      meta = m.dump() + "\n";
      meta_fd = create_temp(meta_path(path), meta_tmp);
      write_all(meta_fd, meta.data(), meta.size(), meta_path(path));
      finish_temp(meta_fd, meta_path(path));
    }
    // The old sidecar goes first, the new one comes last: a file is never seen with a sidecar
    // from another save.
    if (::unlink(meta_path(path).c_str()) != 0 && errno != ENOENT)
      io_error("save", path, "cannot remove the old " + meta_path(path).string(), errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      io_error("save", path, "cannot rename " + tmp.string() + " over it", errno);
    if (!meta.empty() && ::rename(meta_tmp.c_str(), meta_path(path).c_str()) != 0)
      io_error("save", path, "cannot rename " + meta_tmp.string() + " over its sidecar", errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    if (meta_fd >= 0) ::close(meta_fd);
    ::unlink(tmp.c_str());
    if (!meta_tmp.empty()) ::unlink(meta_tmp.c_str());
    throw;
  }
  // Make the renames themselves durable. The new file is in place even if this fails.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) io_error("save", path, "cannot open its directory to fsync it", errno);
  int rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0) io_error("save", path, "fsync of the directory failed", err);
}

namespace {

// A file's bytes: mapped when possible (no copy; parsing copies once, into the arrays), read
// into memory otherwise (pipes, /proc files). `populate` faults the whole mapping in at once
// (faster to parse); without it pages come in as they are read, and may be given back.
class FileBytes {
 public:
  explicit FileBytes(const std::filesystem::path& path, bool populate = true) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_error("load", path, "cannot open", errno);
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* p =
          ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
      if (p != MAP_FAILED) {
        map_ = p;
        ::close(fd);
        return;
      }
    }
    size_ = 0;
    char chunk[1 << 16];
    while (true) {
      ssize_t r = ::read(fd, chunk, sizeof chunk);
      if (r == 0) break;
      if (r < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        io_error("load", path, "read failed", err);
      }
      data_.append(chunk, static_cast<size_t>(r));
    }
    ::close(fd);
  }
  ~FileBytes() {
    if (map_) ::munmap(map_, size_);
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  bool mapped() const { return map_ != nullptr; }
  // Gives a mapping's pages back (they are read again from the page cache when touched).
  void release() const {
    if (map_) ::madvise(map_, size_, MADV_DONTNEED);
  }
  std::string_view text() const {
    return map_ ? std::string_view(static_cast<const char*>(map_), size_) : std::string_view(data_);
  }

 private:
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::string data_;
};

Meta read_meta(const std::filesystem::path& path) {
  Meta meta;
  std::filesystem::path mp = meta_path(path);
  std::error_code ec;
  if (!std::filesystem::exists(mp, ec)) return meta;
  meta.present = true;
  FileBytes file(mp);
  auto bad = [&](const std::string& why) {
    throw SerializationError("load: " + path.string() + ": its sidecar " + mp.string() + " " + why);
  };
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(file.text());
  } catch (const std::exception& e) {
    bad(std::string("is not JSON: ") + e.what());
  }
  if (!m.is_object() || !m.contains("flaxpp_meta") || !m.contains("bytes") ||
      !m["bytes"].is_number_unsigned())
    bad("lacks \"flaxpp_meta\" or \"bytes\"");
  meta.bytes = m["bytes"].get<uint64_t>();
  if (m.contains("crc32c")) {
    if (!m["crc32c"].is_string()) bad("has a \"crc32c\" that is not a string");
    meta.has_checksum = true;
    meta.crc32c = m["crc32c"].get<std::string>();
  }
  if (m.contains("dtypes")) {
    if (!m["dtypes"].is_object()) bad("has \"dtypes\" that is not an object");
    for (const auto& [k, v] : m["dtypes"].items()) {
      if (!v.is_string()) bad("has a dtype for " + k + " that is not a string");
      meta.dtypes.emplace_back(k, v.get<std::string>());
    }
  }
  return meta;
}

// "" when data matches the sidecar's byte count and checksum, else why not.
std::string mismatch(const Meta& meta, std::string_view data) {
  if (data.size() != meta.bytes)
    return "the file has " + std::to_string(data.size()) + " bytes, its sidecar says " +
           std::to_string(meta.bytes) + " (truncated, or replaced without its sidecar)";
  if (!meta.has_checksum) return "";
  std::string crc = hex32(crc32c(data.data(), data.size()));
  if (crc != meta.crc32c)
    return "checksum mismatch: the file's CRC32C is " + crc + ", its sidecar says " + meta.crc32c +
           " (the file is corrupt)";
  return "";
}

Tree load_impl(const std::filesystem::path& path, const Tree* target, const RestoreOptions& o) {
  Format format = format_of(path);
  FileBytes file(path, /*populate=*/format != Format::safetensors);
  std::string_view data = file.text();
  Meta meta = read_meta(path);
  if (meta.present) {
    std::string why = mismatch(meta, data);
    if (!why.empty()) io_error("load", path, why, 0);
    if (format == Format::safetensors) file.release();  // checksumming read it all in
  }
  try {
    if (format == Format::json) {
      if (meta.dtypes.empty()) return target ? from_json(*target, data, o) : from_json(data);
      Tree exact = apply_json_dtype_notes(from_json(data), meta.dtypes);
      return target ? from_state_dict(*target, exact, o) : exact;
    }
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    if (format == Format::safetensors) {
      Tree tree = detail::read_safetensors(bytes, '.', file.mapped()).tree;
      return target ? from_state_dict(*target, tree, o) : tree;
    }
    return target ? from_bytes(*target, bytes, o) : from_bytes(bytes);
  } catch (const SerializationError& e) {
    io_error("load", path, e.what(), 0);
  }
}
}  // namespace

Tree load(const std::filesystem::path& path) { return load_impl(path, nullptr, {}); }

Safetensors load_safetensors(const std::filesystem::path& path, char separator) {
  FileBytes file(path, /*populate=*/false);
  std::string_view data = file.text();
  Meta meta = read_meta(path);
  if (meta.present) {
    std::string why = mismatch(meta, data);
    if (!why.empty()) io_error("load", path, why, 0);
    file.release();
  }
  try {
    return detail::read_safetensors({reinterpret_cast<const uint8_t*>(data.data()), data.size()},
                                    separator, file.mapped());
  } catch (const SerializationError& e) {
    io_error("load", path, e.what(), 0);
  }
}

Tree load(const std::filesystem::path& path, const Tree& target, const RestoreOptions& opts) {
  return load_impl(path, &target, opts);
}

std::string verify_checksum(const std::filesystem::path& path) {
  Meta meta = read_meta(path);
  if (!meta.present || !meta.has_checksum) return "no checksum";
  FileBytes file(path);
  return mismatch(meta, file.text());
}

}  // namespace flaxpp
