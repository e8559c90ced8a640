#include "core/debug.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace flaxpp {

void check_finite(const Tree& tree, const std::string& what) {
  for (const auto& [path, a] : flatten_dict(tree)) {
    if (a.dtype() != DType::float32) continue;
    const float* x = a.data<float>();
    int64_t n = a.size(), first = -1, bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(x[i])) continue;
      if (first < 0) first = i;
      ++bad;
    }
    if (first < 0) continue;
    // Row-major flat index -> index per axis.
    std::string index;
    for (int64_t rest = first, ax = static_cast<int64_t>(a.ndim()) - 1; ax >= 0; --ax) {
      int64_t d = a.shape()[static_cast<size_t>(ax)];
      index = std::to_string(rest % d) + (index.empty() ? "" : ", ") + index;
      rest /= d;
    }
    std::string where = what;
    if (!path.empty()) where += (where.empty() ? "" : "/") + path;
    std::ostringstream msg;
    msg << "check_finite: " << (where.empty() ? "<root>" : where) << ": "
        << (std::isnan(x[first]) ? "nan"
            : x[first] > 0       ? "inf"
                                 : "-inf")
        << " at index " << first << " [" << index << "] of float32" << to_string(a.shape()) << "; "
        << bad << " of " << n << " values not finite";
    throw std::runtime_error(msg.str());
  }
}

}  // namespace flaxpp
