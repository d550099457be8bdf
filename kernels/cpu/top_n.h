// Partial ranking of a logit vector, shared by the row sampler (top-k) and LogprobsFor (top-n).
#ifndef JAMBA_KERNELS_CPU_TOP_N_H_
#define JAMBA_KERNELS_CPU_TOP_N_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/types/span.h"

namespace jamba {

// The value a logit is ranked by: NaN counts as -inf, everything else as itself.
inline float RankKey(float v) {
  return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
}

// True if index `a` ranks before index `b`: larger RankKey first, then the lower index. This
// is a strict total order, so every ranking in this module is unique and reproducible.
inline bool RanksBefore(absl::Span<const float> values, int32_t a, int32_t b) {
  const float va = RankKey(values[a]);
  const float vb = RankKey(values[b]);
  return va > vb || (va == vb && a < b);
}

// The min(n, values.size()) best indices under RanksBefore, best first. O(V log n) time with
// a bounded heap, O(n) extra memory.
std::vector<int32_t> TopNIndices(absl::Span<const float> values, int32_t n);

}  // namespace jamba

#endif  // JAMBA_KERNELS_CPU_TOP_N_H_
