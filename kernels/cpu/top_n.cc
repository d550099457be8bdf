#include "kernels/cpu/top_n.h"

#include <algorithm>

namespace jamba {

std::vector<int32_t> TopNIndices(absl::Span<const float> values, int32_t n) {
  const int32_t size = static_cast<int32_t>(values.size());
  const int32_t k = std::max<int32_t>(0, std::min(n, size));
  std::vector<int32_t> heap;
  if (k == 0) return heap;
  heap.reserve(k);
  // With RanksBefore as the heap's "less", heap.front() is the worst index kept so far.
  auto before = [values](int32_t a, int32_t b) { return RanksBefore(values, a, b); };
  for (int32_t i = 0; i < size; ++i) {
    if (static_cast<int32_t>(heap.size()) < k) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), before);
    } else if (before(i, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), before);
      heap.back() = i;
      std::push_heap(heap.begin(), heap.end(), before);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), before);  // best first
  return heap;
}

}  // namespace jamba
