// Uploads a BatchLayout to the device for the state-carrying kernels (Mamba conv/scan, paged
// attention), once per layout id: every Mamba and attention layer of one forward reuses the
// copy. Host-compiled.
#ifndef JAMBA_KERNELS_CUDA_DEVICE_LAYOUT_H_
#define JAMBA_KERNELS_CUDA_DEVICE_LAYOUT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/batch_layout.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device_memory.h"

namespace jamba::cuda {

// Bounds a layout is checked against before upload.
struct LayoutLimits {
  int64_t rows = 0;          // rows of the op's tensors (>= every token_begin + n_tokens)
  int64_t mamba_slots = -1;  // Mamba state pool slots; -1: the op has no Mamba state
  int64_t kv_blocks = -1;    // KV cache blocks; -1: the op has no KV cache
};

class LayoutCache {
 public:
  // `copy(host, bytes, dst)` enqueues a host -> device copy that returns once `host` may be
  // reused (the backend's staged upload).
  using CopyFn = std::function<absl::Status(const void* host, size_t bytes, void* dst)>;
  LayoutCache(std::shared_ptr<StreamContext> ctx, CopyFn copy)
      : scratch_(std::move(ctx)), copy_(std::move(copy)) {}

  // The device copy of `layout`. Out-of-range rows, slots or block table entries are
  // programmer errors (abort), as on the CPU backend. Allocation/copy failures are returned.
  absl::StatusOr<DeviceLayout> Get(const BatchLayout& layout, const LayoutLimits& limits);

 private:
  Scratch scratch_;
  CopyFn copy_;
  uint64_t cached_id_ = 0;
  // The pool size the cached layout's block tables were checked against (INT64_MAX: not
  // checked; a later op with a KV cache checks them).
  int64_t checked_kv_blocks_ = INT64_MAX;
  DeviceLayout cached_{};
  std::vector<int32_t> host_;
};

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_DEVICE_LAYOUT_H_
