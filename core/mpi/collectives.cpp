#include "core/mpi/collectives.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace flaxpp::mpi {

namespace {

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string(call) +
                           " failed: " + std::string(msg, static_cast<size_t>(len)));
}

// Every leaf of `tree` (sorted order), concatenated into one float32 buffer.
std::vector<float> pack(const std::vector<Array>& leaves, const char* what) {
  size_t total = 0;
  for (const Array& a : leaves) {
    if (!a.is_float())
      throw std::invalid_argument(std::string(what) + ": every leaf must be float32, got " +
                                  dtype_name(a.dtype()) + " " + to_string(a.shape()));
    total += static_cast<size_t>(a.size());
  }
  std::vector<float> buf(total);
  size_t off = 0;
  for (const Array& a : leaves) {
    std::memcpy(buf.data() + off, a.data<float>(), a.nbytes());
    off += static_cast<size_t>(a.size());
  }
  return buf;
}

// Splits `buf` back into arrays shaped like `like`, dividing by `divisor` (as lax.pmean does).
std::vector<Array> unpack(const std::vector<float>& buf, const std::vector<Array>& like,
                          float divisor) {
  std::vector<Array> out;
  size_t off = 0;
  for (const Array& a : like) {
    Array r = Array::empty(a.shape(), DType::float32);
    float* p = r.mutable_data<float>();
    for (int64_t i = 0; i < a.size(); ++i) p[i] = buf[off + static_cast<size_t>(i)] / divisor;
    off += static_cast<size_t>(a.size());
    out.push_back(r);
  }
  return out;
}

// Collective: every rank learns the smallest and largest `n` (one allreduce of (n, -n) with
// MPI_MAX), so that a mismatch is the same error on every rank rather than a hang in the
// collective that would follow.
void require_equal_counts(size_t count, const char* what, const char* unit) {
  long long n = static_cast<long long>(count), range[2] = {n, -n};  // max, -min
  check(MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD),
        "MPI_Allreduce");
  if (range[0] != -range[1])
    throw std::runtime_error(std::string(what) + ": the ranks hold " + std::to_string(-range[1]) +
                             " to " + std::to_string(range[0]) + " " + unit + "; rank " +
                             std::to_string(rank()) + " holds " + std::to_string(n));
}

Tree allreduce(const Tree& tree, bool mean, const char* what) {
  auto [leaves, def] = tree_flatten(tree);
  std::vector<float> buf = pack(leaves, what);
  if (initialized() && size() > 1)
    check(MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size()), MPI_FLOAT, MPI_SUM,
                        MPI_COMM_WORLD),
          "MPI_Allreduce");
  return def.unflatten(unpack(buf, leaves, mean ? static_cast<float>(size()) : 1.f));
}

}  // namespace

Environment::Environment(int& argc, char**& argv) {
  if (!initialized()) {
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_ = true;
  }
}

Environment::Environment() {
  if (!initialized()) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_ = true;
  }
}

Environment::~Environment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

bool initialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

int rank() {
  if (!initialized()) return 0;
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int size() {
  if (!initialized()) return 1;
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

void barrier() {
  if (initialized()) check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

Tree psum(const Tree& tree) { return allreduce(tree, false, "psum"); }
Tree pmean(const Tree& tree) { return allreduce(tree, true, "pmean"); }
Array psum(const Array& x) { return psum(Tree(x)).array(); }
Array pmean(const Array& x) { return pmean(Tree(x)).array(); }

Tree broadcast(const Tree& tree, int root) {
  auto [leaves, def] = tree_flatten(tree);
  std::vector<float> buf = pack(leaves, "broadcast");
  if (initialized() && size() > 1) {
    require_equal_counts(buf.size(), "broadcast", "parameters");
    check(MPI_Bcast(buf.data(), static_cast<int>(buf.size()), MPI_FLOAT, root, MPI_COMM_WORLD),
          "MPI_Bcast");
  }
  return def.unflatten(unpack(buf, leaves, 1.f));
}

std::vector<double> psum(std::vector<double> values) {
  if (initialized() && size() > 1) {
    require_equal_counts(values.size(), "psum", "values");
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE,
                        MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  return values;
}

std::vector<uint8_t> broadcast_bytes(std::vector<uint8_t> bytes, int root) {
  if (!initialized() || size() < 2) return bytes;
  unsigned long long n = bytes.size();
  check(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
  bytes.resize(static_cast<size_t>(n));
  constexpr size_t kChunk = size_t{1} << 30;  // MPI counts are int
  for (size_t off = 0; off < bytes.size(); off += kChunk) {
    int len = static_cast<int>(std::min(kChunk, bytes.size() - off));
    check(MPI_Bcast(bytes.data() + off, len, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  return bytes;
}

bool broadcast_flag(bool flag, int root) {
  if (!initialized() || size() < 2) return flag;
  int v = flag ? 1 : 0;
  check(MPI_Bcast(&v, 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Bcast");
  return v != 0;
}

int ranks_on_this_host() {
  if (!initialized()) return 1;
  MPI_Comm host;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host),
        "MPI_Comm_split_type");
  int n = 1;
  int rc = MPI_Comm_size(host, &n);
  MPI_Comm_free(&host);
  check(rc, "MPI_Comm_size");
  return n;
}

void abort(int code) {
  if (initialized() && size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

random::Key rank_key(random::Key key) {
  return random::fold_in(key, static_cast<uint32_t>(rank()));
}

std::pair<int64_t, int64_t> shard_range(int64_t n, int r, int s) {
  if (s <= 0 || r < 0 || r >= s)
    throw std::invalid_argument("shard_range: rank " + std::to_string(r) + " of " +
                                std::to_string(s));
  int64_t base = n / s, extra = n % s;
  int64_t begin = r * base + std::min<int64_t>(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace flaxpp::mpi
