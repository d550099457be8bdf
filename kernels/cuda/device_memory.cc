#include "kernels/cuda/device_memory.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace jamba::cuda {

absl::Status CudaError(cudaError_t e, const char* what) {
  const std::string msg =
      absl::StrCat("CUDA ", what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

// ---- StreamContext ------------------------------------------------------------------------

StreamContext::~StreamContext() {
  if (stream == nullptr) return;
  cudaSetDevice(device);
  cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
}

cudaError_t StreamContext::Malloc(void** p, size_t bytes) const {
  return pooled ? cudaMallocAsync(p, bytes, stream) : cudaMalloc(p, bytes);
}

void StreamContext::Free(void* p) const {
  if (p == nullptr) return;
  cudaSetDevice(device);
  if (pooled) {
    cudaFreeAsync(p, stream);
  } else {
    cudaFree(p);
  }
}

// ---- CudaBuffer -----------------------------------------------------------------------------

CudaBuffer::CudaBuffer(std::shared_ptr<StreamContext> ctx, void* data, DType dtype,
                       std::initializer_list<int64_t> shape)
    : ctx_(std::move(ctx)), data_(data) {
  tensor_ = Tensor::Contiguous(data, dtype, shape, Device::kCuda);
}

CudaBuffer::~CudaBuffer() { ctx_->Free(data_); }

// ---- Scratch ------------------------------------------------------------------------------

Scratch::~Scratch() { ctx_->Free(data_); }

absl::StatusOr<void*> Scratch::Reserve(size_t bytes) {
  if (data_ != nullptr && bytes <= capacity_) return data_;
  ctx_->Free(data_);
  data_ = nullptr;
  capacity_ = 0;
  const size_t want = std::max<size_t>(bytes, 256);
  void* p = nullptr;
  cudaError_t e = ctx_->Malloc(&p, want);
  if (e != cudaSuccess) return CudaError(e, "scratch allocation");
  data_ = p;
  capacity_ = want;
  return data_;
}

// ---- PinnedStaging --------------------------------------------------------------------------

PinnedStaging::~PinnedStaging() {
  for (cudaEvent_t e : events_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  if (base_ != nullptr) cudaFreeHost(base_);
}

absl::Status PinnedStaging::Init() {
  void* p = nullptr;
  cudaError_t e = cudaMallocHost(&p, kSlots * kSlotBytes);
  if (e != cudaSuccess) return CudaError(e, "pinned staging allocation");
  base_ = static_cast<uint8_t*>(p);
  for (cudaEvent_t& ev : events_) {
    e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      ev = nullptr;
      return CudaError(e, "event creation");
    }
  }
  return absl::OkStatus();
}

absl::Status PinnedStaging::Upload(const void* host, size_t bytes, void* dst, cudaStream_t stream) {
  const int slot = next_;
  next_ = (next_ + 1) % kSlots;
  if (used_[slot]) {
    cudaError_t e = cudaEventSynchronize(events_[slot]);
    if (e != cudaSuccess) return CudaError(e, "staging wait");
  }
  uint8_t* staged = base_ + slot * kSlotBytes;
  std::memcpy(staged, host, bytes);
  cudaError_t e = cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess) return CudaError(e, "upload");
  e = cudaEventRecord(events_[slot], stream);
  if (e != cudaSuccess) return CudaError(e, "event record");
  used_[slot] = true;
  return absl::OkStatus();
}

}  // namespace jamba::cuda
