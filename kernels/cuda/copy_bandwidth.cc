#include <cuda_runtime_api.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_memory.h"

namespace jamba {

absl::StatusOr<double> CudaCopyBandwidth(int device, int64_t bytes, int repeats) {
  if (bytes <= 0 || repeats < 1) return absl::InvalidArgumentError("bytes and repeats must be > 0");
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) return count.status();
  if (device < 0 || device >= *count) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA device ", device, " does not exist"));
  }
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return cuda::CudaError(e, "set device");
  void* src = nullptr;
  void* dst = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0.0;
  auto cleanup = [&]() {
    if (src != nullptr) cudaFree(src);
    if (dst != nullptr) cudaFree(dst);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  };
  e = cudaMalloc(&src, bytes);
  if (e == cudaSuccess) e = cudaMalloc(&dst, bytes);
  if (e == cudaSuccess) e = cudaMemset(src, 1, bytes);
  if (e == cudaSuccess) e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&stop);
  // One untimed copy first: page mapping and clocks.
  if (e == cudaSuccess) e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  for (int r = 0; r < repeats && e == cudaSuccess; ++r) {
    e = cudaEventRecord(start);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    if (e == cudaSuccess) e = cudaEventRecord(stop);
    if (e == cudaSuccess) e = cudaEventSynchronize(stop);
    float ms = 0.0f;
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
    if (e == cudaSuccess && ms > 0.0f) best = std::max(best, 2.0 * bytes / (ms * 1e-3));
  }
  cleanup();
  if (e != cudaSuccess) return cuda::CudaError(e, "copy bandwidth measurement");
  return best;
}

}  // namespace jamba
