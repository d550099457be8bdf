#include "kernels/batch_layout.h"

#include <atomic>

namespace jamba {

uint64_t NextBatchLayoutId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace jamba
