// The examples' data sets, read from Debian packages (no network):
//
//   auto corpus = examples::load_fortunes("/usr/share/games/fortunes", /*val_every=*/20);  // `fortunes`
//   corpus.train, corpus.val       // text: each fortune followed by "%\n", as in the files
//   auto train = examples::load_idx_images(dir / "train-images-idx3-ubyte.gz");   // `dataset-fashion-mnist`
//   auto labels = examples::load_idx_labels(dir / "train-labels-idx1-ubyte.gz");
//
// load_fortunes reads every fortune text file of the directory in name order (the .dat index
// files and the .u8 symlinks are skipped, and so is any file with NUL bytes), splits them on
// lines holding a single "%" and puts every val_every-th fortune (the last of each group of
// val_every) in the validation text: whole fortunes, so no fortune is split across the two.
//
// The idx readers go through zlib (gzopen also reads an uncompressed file) and check the magic
// number (0x00000803 for uint8 images of rank 3, 0x00000801 for uint8 labels), the sizes in the
// header against the file's length, and label values <= 9. Errors (DataError) name the file and
// the Debian package to install when it is missing.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

namespace fs = std::filesystem;

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- fortunes -------------------------------------------------------------------------------

struct FortuneCorpus {
  std::string train, val;
  std::vector<std::string> files;      // file names read, in order
  int64_t num_train = 0, num_val = 0;  // fortunes in each split
};

inline FortuneCorpus load_fortunes(const fs::path& dir, int val_every = 20) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw DataError(dir.string() +
                    " not found: install the Debian package `fortunes` "
                    "(apt-get install fortunes; scripts/test installs it)");
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_symlink() || !e.is_regular_file()) continue;  // the .u8 names are symlinks
    auto ext = e.path().extension().string();
    if (ext == ".dat" || ext == ".u8") continue;
    paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  FortuneCorpus c;
  int64_t index = 0;
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find('\0') != std::string::npos) continue;  // not a fortune text file
    c.files.push_back(p.filename().string());
    std::istringstream lines(text);
    std::string line, fortune;
    auto flush = [&] {
      if (fortune.find_first_not_of(" \t\n") == std::string::npos) {
        fortune.clear();
        return;
      }
      bool val = val_every > 0 && index % val_every == val_every - 1;
      (val ? c.val : c.train) += fortune + "%\n";
      ++(val ? c.num_val : c.num_train);
      ++index;
      fortune.clear();
    };
    while (std::getline(lines, line)) {
      if (line == "%")
        flush();
      else
        fortune += line + "\n";
    }
    flush();
  }
  if (c.train.empty())
    throw DataError("no fortunes found in " + dir.string() +
                    ": install the Debian package `fortunes`");
  return c;
}

// ---- idx (MNIST / Fashion-MNIST) ------------------------------------------------------------

struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, row-major
};

namespace detail {

inline std::vector<uint8_t> read_gz(const fs::path& path, const char* package) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw DataError(path.string() + " not found: install the Debian package `" + package +
                    "` (apt-get install " + package + "; scripts/test installs it)");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError(path.string() + ": cannot open");
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw DataError(path.string() + ": corrupt gzip data (" + msg + ")");
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buf, buf + n);
  }
  gzclose(f);
  return bytes;
}

inline uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         uint32_t{b[at + 3]};
}

inline std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace detail

inline IdxImages load_idx_images(const fs::path& path,
                                 const char* package = "dataset-fashion-mnist") {
  auto b = detail::read_gz(path, package);
  if (b.size() < 16)
    throw DataError(path.string() + ": " + std::to_string(b.size()) +
                    " bytes, too short for an idx3 header");
  uint32_t magic = detail::be32(b, 0);
  if (magic != 0x00000803)
    throw DataError(path.string() + ": magic number " + detail::hex(magic) +
                    ", expected 0x00000803 (idx3 uint8 images)");
  IdxImages im{
      .count = detail::be32(b, 4), .rows = detail::be32(b, 8), .cols = detail::be32(b, 12)};
  uint64_t want = 16 + uint64_t(im.count) * uint64_t(im.rows) * uint64_t(im.cols);
  if (b.size() != want)
    throw DataError(path.string() + ": header says " + std::to_string(im.count) + " images of " +
                    std::to_string(im.rows) + "x" + std::to_string(im.cols) + " (" +
                    std::to_string(want) + " bytes), the data has " + std::to_string(b.size()) +
                    " bytes");
  im.pixels.assign(b.begin() + 16, b.end());
  return im;
}

inline std::vector<uint8_t> load_idx_labels(const fs::path& path,
                                            const char* package = "dataset-fashion-mnist",
                                            int num_classes = 10) {
  auto b = detail::read_gz(path, package);
  if (b.size() < 8)
    throw DataError(path.string() + ": " + std::to_string(b.size()) +
                    " bytes, too short for an idx1 header");
  uint32_t magic = detail::be32(b, 0);
  if (magic != 0x00000801)
    throw DataError(path.string() + ": magic number " + detail::hex(magic) +
                    ", expected 0x00000801 (idx1 uint8 labels)");
  uint64_t count = detail::be32(b, 4);
  if (b.size() != 8 + count)
    throw DataError(path.string() + ": header says " + std::to_string(count) +
                    " labels, the data has " + std::to_string(b.size() - 8));
  std::vector<uint8_t> labels(b.begin() + 8, b.end());
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= num_classes)
      throw DataError(path.string() + ": label " + std::to_string(labels[i]) + " at index " +
                      std::to_string(i) + " is not in [0, " + std::to_string(num_classes) + ")");
  return labels;
}

}  // namespace examples
