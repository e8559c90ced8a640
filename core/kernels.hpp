// Internal helpers for primitive kernels (not part of the public API).
#pragma once

#include <cstdint>
#include <cstring>

#include "array.hpp"

namespace flaxpp::kernels {

// Strides (in elements) of `s` viewed as `out` under broadcasting: 0 on broadcast axes.
inline Shape broadcast_strides(const Shape& s, const Shape& out) {
  Shape st = strides_of(s), r;
  size_t lead = out.size() - s.size();
  for (size_t i = 0; i < out.size(); ++i)
    r.push_back(i < lead || s[i - lead] == 1 ? 0 : st[i - lead]);
  return r;
}

// As for_each_broadcast, but only for the innermost-axis runs [run_begin, run_end) (a run is one
// row of the last axis), so a broadcast loop can be split across threads.
template <class Fn>
void for_each_broadcast_runs(const Shape& out, const Shape& sa, const Shape& sb, int64_t run_begin,
                             int64_t run_end, Fn fn) {
  if (out.empty()) {
    if (run_begin == 0 && run_end > 0) fn(0, 0, 0, 1, 0, 0);
    return;
  }
  size_t nd = out.size();
  int64_t inner = out[nd - 1];
  int64_t idx[Shape::kMaxRank] = {0};
  int64_t ao = 0, bo = 0, rem = run_begin;
  for (size_t d = nd - 1; d-- > 0;) {
    idx[d] = rem % out[d];
    rem /= out[d];
    ao += idx[d] * sa[d];
    bo += idx[d] * sb[d];
  }
  for (int64_t run = run_begin; run < run_end; ++run) {
    fn(run * inner, ao, bo, inner, sa[nd - 1], sb[nd - 1]);
    for (size_t d = nd - 1; d-- > 0;) {
      ++idx[d];
      ao += sa[d];
      bo += sb[d];
      if (idx[d] < out[d]) break;
      ao -= sa[d] * out[d];
      bo -= sb[d] * out[d];
      idx[d] = 0;
    }
  }
}

// Calls fn(out_index, a_offset, b_offset, n, a_step, b_step) for every run of the innermost axis.
template <class Fn>
void for_each_broadcast(const Shape& out, const Shape& sa, const Shape& sb, Fn fn) {
  int64_t total = numel(out);
  if (total == 0) return;
  int64_t inner = out.empty() ? 1 : out.back();
  for_each_broadcast_runs(out, sa, sb, 0, out.empty() ? 1 : total / inner, fn);
}

// Materialises `a` broadcast to `out` (contiguous copy).
template <class T>
void broadcast_copy(const T* src, const Shape& s, T* dst, const Shape& out) {
  Shape st = broadcast_strides(s, out);
  for_each_broadcast(out, st, st,
                     [&](int64_t o, int64_t ao, int64_t, int64_t n, int64_t as, int64_t) {
                       if (as == 1)
                         std::memcpy(dst + o, src + ao, n * sizeof(T));
                       else
                         for (int64_t i = 0; i < n; ++i) dst[o + i] = src[ao + i * as];
                     });
}

}  // namespace flaxpp::kernels
