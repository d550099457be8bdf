// Device and pinned-host memory management of the CUDA backend (host-compiled; may use
// abseil): the stream context shared by a backend and its buffers, the DeviceBuffer type,
// growable scratch memory, and pinned staging slots for asynchronous uploads.
#ifndef JAMBA_KERNELS_CUDA_DEVICE_MEMORY_H_
#define JAMBA_KERNELS_CUDA_DEVICE_MEMORY_H_

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace jamba::cuda {

// Internal (ResourceExhausted for out-of-memory) with the runtime's error name and text.
absl::Status CudaError(cudaError_t e, const char* what);

// A stream and how memory is allocated on it. Shared by a backend and its buffers, so a buffer
// frees its memory in stream order even after the backend is gone; the stream is destroyed
// (after draining) with the last owner.
struct StreamContext {
  int device = 0;
  bool pooled = false;  // stream-ordered allocation (cudaMallocAsync) is supported
  cudaStream_t stream = nullptr;

  StreamContext() = default;
  StreamContext(const StreamContext&) = delete;
  StreamContext& operator=(const StreamContext&) = delete;
  ~StreamContext();

  cudaError_t Malloc(void** p, size_t bytes) const;
  // Stream-ordered when pooled; no-op for nullptr.
  void Free(void* p) const;
};

// A zero-initialised device allocation owned through a StreamContext.
class CudaBuffer : public DeviceBuffer {
 public:
  CudaBuffer(std::shared_ptr<StreamContext> ctx, void* data, DType dtype,
             std::initializer_list<int64_t> shape);
  ~CudaBuffer() override;

 private:
  std::shared_ptr<StreamContext> ctx_;
  void* data_;
};

// Device memory that only grows. Reallocation is stream-ordered, so work already enqueued on
// the old block is unaffected.
class Scratch {
 public:
  explicit Scratch(std::shared_ptr<StreamContext> ctx) : ctx_(std::move(ctx)) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();
  // At least `bytes` bytes, 256-byte aligned.
  absl::StatusOr<void*> Reserve(size_t bytes);

 private:
  std::shared_ptr<StreamContext> ctx_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Pinned host slots for small uploads: the caller's bytes are copied into a slot and the
// device copy runs from there, so the caller's memory is free on return and the host does not
// wait for the GPU. A slot is reused only after the copy that last read it has executed.
class PinnedStaging {
 public:
  static constexpr int kSlots = 64;
  static constexpr size_t kSlotBytes = 64 << 10;

  PinnedStaging() = default;
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  // The owner must have drained every stream that used the slots.
  ~PinnedStaging();
  absl::Status Init();
  // Enqueues host -> dst on `stream`; bytes <= kSlotBytes.
  absl::Status Upload(const void* host, size_t bytes, void* dst, cudaStream_t stream);

 private:
  uint8_t* base_ = nullptr;
  std::array<cudaEvent_t, kSlots> events_{};
  std::array<bool, kSlots> used_{};
  int next_ = 0;
};

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_DEVICE_MEMORY_H_
