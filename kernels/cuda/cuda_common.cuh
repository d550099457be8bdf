// Device-side helpers shared by the .cu files of the CUDA backend: 2-D f32 views, launch
// geometry, block reductions, bf16 conversions, error recording. nvcc only.
#ifndef JAMBA_KERNELS_CUDA_CUDA_COMMON_CUH_
#define JAMBA_KERNELS_CUDA_CUDA_COMMON_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "common/check.h"
#include "kernels/tensor.h"

namespace jamba::cuda {

// A 2-D row-major f32 view: element (i, j) at data[i * ld + j]. Passed to kernels by value.
struct MatF32 {
  float* data;
  int64_t rows;
  int64_t cols;
  int64_t ld;
  __device__ float* row(int64_t i) const { return data + i * ld; }
};

// Checks a 2-D device tensor of dtype f32 and returns its view (host side).
inline MatF32 AsMatF32(const Tensor& t) {
  JAMBA_CHECK(t.device == Device::kCuda);
  JAMBA_CHECK(t.dtype == DType::kF32 && t.ndim == 2 && t.stride[1] == 1);
  JAMBA_CHECK(t.shape[0] <= 1 || t.stride[0] >= t.shape[1]);
  return MatF32{t.ptr<float>(), t.shape[0], t.shape[1], t.stride[0]};
}

// A contiguous device vector of `n` i32 indices.
inline const int32_t* AsIndexVector(const Tensor& t, int64_t n) {
  JAMBA_CHECK(t.device == Device::kCuda);
  JAMBA_CHECK(t.dtype == DType::kI32 && t.ndim == 1 && t.shape[0] == n && t.contiguous());
  return t.ptr<int32_t>();
}

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// Grid for a row-wise elementwise kernel over [rows, cols]: blockIdx.y strides over rows,
// blockIdx.x (with kThreads threads) over columns. Kernels loop, so any size is covered.
inline dim3 RowColGrid(int64_t rows, int64_t cols) {
  const int64_t col_blocks = std::min<int64_t>((cols + kThreads - 1) / kThreads, 1024);
  return dim3(static_cast<unsigned>(std::max<int64_t>(col_blocks, 1)),
              static_cast<unsigned>(std::clamp<int64_t>(rows, 1, kMaxGridY)));
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...), through the runtime's typed launch
// (cudaLaunchKernelEx: the arguments are converted to the kernel's parameter types as with
// <<<>>>). Returns the launch status, which cudaGetLastError also reports. The CUDA emulator
// (kernels/cuda/emulator) implements the same call, so the kernels compile for it unchanged.
template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// The block's dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
template <typename T>
__device__ inline T* DynamicShared() {
#ifdef JAMBA_CUDA_EMULATOR
  return static_cast<T*>(::jamba::cuda_emu::DynamicSharedMemory());
#else
  extern __shared__ __align__(16) unsigned char dynamic_shared[];
  return reinterpret_cast<T*>(dynamic_shared);
#endif
}

// Records `code` in the error word unless an earlier error is already there.
__device__ inline void RecordError(int* error_word, int code) { atomicCAS(error_word, 0, code); }

// Sum of `v` over the block; every thread gets the result. blockDim.x must be a multiple of 32
// (at most 1024). Contains __syncthreads: call from all threads.
__device__ inline float BlockSum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    float s = lane < warps ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// bf16 is the top half of an f32: widening is exact.
__device__ inline float Bf16BitsToF32(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

// Round to nearest even, NaN stays NaN (the same rule as F32ToBf16 in kernels/dtype.h).
__device__ inline uint16_t F32ToBf16BitsRne(float f) {
  uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_CUDA_COMMON_CUH_
