// State of the emulated device shared by the emulator's runtime API (runtime.cc), its
// launches (grid.cc) and its cuBLAS (cublas.cc). Internal to the emulator.
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_EMULATED_DEVICE_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_EMULATED_DEVICE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>

namespace jamba::cuda_emu {

// The emulated device's figures (an H100 SXM's).
inline constexpr int kMultiProcessors = 132;
inline constexpr size_t kDefaultSharedBytes = 48 * 1024;  // without an opt-in
inline constexpr size_t kOptinSharedBytes = 227 * 1024;   // cudaDevAttrMaxSharedMemoryPerBlockOptin
inline constexpr size_t kTotalMemoryBytes = size_t{80} << 30;

// Records `e` as the calling thread's last error (unless it is cudaSuccess) and returns it.
cudaError_t Record(cudaError_t e);
// Whether `stream` is the default stream (null) or a live stream of cudaStreamCreate*.
bool StreamValid(cudaStream_t stream);
// The dynamic shared memory a launch of `kernel` may use (cudaFuncSetAttribute).
size_t KernelSharedLimit(const void* kernel);
// Whether [p, p + bytes) lies inside one live device allocation (cudaMalloc*).
bool InDeviceAllocation(const void* p, size_t bytes);

// Work on streams runs later, as on a GPU: Enqueue appends it to one queue (every stream's
// work in the order it was enqueued, which keeps each stream's order), and RunQueued runs
// everything queued. The runtime calls RunQueued where CUDA makes the host wait (stream,
// event and device synchronisation, blocking copies, frees) and nowhere else, so host code
// that reads results or reuses a buffer before such a point sees the work not yet done.
void Enqueue(std::function<void()> work);
void RunQueued();

}  // namespace jamba::cuda_emu

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_EMULATED_DEVICE_H_
