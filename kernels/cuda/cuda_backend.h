// The CUDA backend: device-resident tensors and one CUDA stream per backend instance (one per
// worker), implementing the Backend contract of kernels/backend.h.
//
// Every op of the interface is implemented: memory (Allocate, Upload, Download, Synchronize),
// Embed, RmsNorm, MatMul (cuBLAS), MatMulInt8 (kernels/cuda/int8_matmul.cu), SiluMul, Add,
// Zero, GatherRows, ScatterAddScaled, Rope, MoeRoute, MambaConv and MambaScan
// (kernels/cuda/mamba.cu), paged Attention (kernels/cuda/attention.cu). The BatchLayout of the
// state-carrying ops is uploaded once per layout id (kernels/cuda/device_layout.h).
//
// Memory: Allocate() uses the device's stream-ordered pool (cudaMallocAsync on the backend's
// stream) and zero-fills, as the CPU backend does. A DeviceBuffer frees its memory in stream
// order and keeps the stream alive, so it may outlive the backend.
// Upload() returns once the host memory may be reused: small uploads are staged through pinned
// memory and do not wait for the GPU; large ones (above 64 KiB) wait for their copy.
// Errors: launch failures, cuBLAS failures and bad indices seen by kernels (token ids, row
// indices) are recorded and returned by the next Download() or Synchronize(); the first
// recorded error is reported once.
#ifndef JAMBA_KERNELS_CUDA_CUDA_BACKEND_H_
#define JAMBA_KERNELS_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace jamba {

// Number of usable CUDA devices: Unavailable when the runtime reports an error (no driver, no
// device, ...) or no device.
absl::StatusOr<int> CudaDeviceCount();

// A backend on CUDA device `device` with its own stream and cuBLAS handle, whose products
// with bf16/int8 weights take their activations at `precision`.
// Unavailable when there is no usable CUDA device; InvalidArgument when `device` is out of
// range; Internal when the device cannot be initialised.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(
    int device, MatMulPrecision precision = MatMulPrecision::kF32);

// The memory bandwidth of CUDA device `device` as a device-to-device copy of `bytes` sustains
// it: bytes read plus bytes written per second, best of `repeats` copies. The benchmarks'
// HBM roofline.
absl::StatusOr<double> CudaCopyBandwidth(int device, int64_t bytes, int repeats);

}  // namespace jamba

#endif  // JAMBA_KERNELS_CUDA_CUDA_BACKEND_H_
