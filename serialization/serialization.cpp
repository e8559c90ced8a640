// Restoring against a target (strict from_state_dict) and atomic checkpoint files.
// The formats: msgpack.cpp, json_read.cpp and json_write.cpp.
#include "serialization/serialization.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <sys/mman.h>
#include <sys/stat.h>

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

}  // namespace

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
  std::random_device rd;
  std::filesystem::path tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 16; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08x", static_cast<int>(::getpid()), rd());
    tmp = dir / ("." + path.filename().string() + suffix);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) io_error("save", path, "cannot create a temporary file in " + dir.string(), errno);
  try {
    std::vector<char> buf;
    buf.reserve(1 << 20);
    // Small pieces are gathered; large ones (array bytes) go straight to the file.
    ByteSink sink = [&](const char* p, size_t n) {
      if (buf.size() + n > buf.capacity()) {
        write_all(fd, buf.data(), buf.size(), path);
        buf.clear();
      }
      if (n >= buf.capacity())
        write_all(fd, p, n, path);
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
    write_all(fd, buf.data(), buf.size(), path);
    if (::fsync(fd) != 0) io_error("save", path, "fsync failed", errno);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) io_error("save", path, "close failed", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      io_error("save", path, "cannot rename " + tmp.string() + " over it", errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable. The new file is in place even if this fails.
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
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
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
  std::string_view text() const {
    return map_ ? std::string_view(static_cast<const char*>(map_), size_) : std::string_view(data_);
  }

 private:
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::string data_;
};

Tree load_impl(const std::filesystem::path& path, const Tree* target, const RestoreOptions& o) {
  Format format = format_of(path);
  FileBytes file(path, /*populate=*/format != Format::safetensors);
  std::string_view data = file.text();
  try {
    if (format == Format::json) return target ? from_json(*target, data, o) : from_json(data);
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
  try {
    return detail::read_safetensors({reinterpret_cast<const uint8_t*>(data.data()), data.size()}, separator,
                                    file.mapped());
  } catch (const SerializationError& e) {
    io_error("load", path, e.what(), 0);
  }
}

Tree load(const std::filesystem::path& path, const Tree& target, const RestoreOptions& opts) {
  return load_impl(path, &target, opts);
}

}  // namespace flaxpp
