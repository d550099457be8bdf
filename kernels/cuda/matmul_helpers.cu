// Elementwise helpers of the cuBLAS matmul (kernels/cuda/cublas_matmul.cc): the bf16 hi/lo
// split of the activations, the sum of the two partial products, and bias broadcasting.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

__global__ void SplitBf16Kernel(MatF32 x, uint16_t* out) {
  uint16_t* hi_base = out;
  uint16_t* lo_base = out + x.rows * x.cols;
  for (int64_t i = blockIdx.y; i < x.rows; i += gridDim.y) {
    const float* xi = x.row(i);
    uint16_t* hi = hi_base + i * x.cols;
    uint16_t* lo = lo_base + i * x.cols;
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < x.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float v = xi[j];
      const uint16_t h = F32ToBf16BitsRne(v);
      hi[j] = h;
      // Exact: v and bf16(v) agree in their leading bits, so the difference fits in an f32.
      lo[j] = F32ToBf16BitsRne(v - Bf16BitsToF32(h));
    }
  }
}

__global__ void SumHalvesKernel(const float* parts, const float* bias, MatF32 y) {
  const float* lo_base = parts + y.rows * y.cols;
  for (int64_t i = blockIdx.y; i < y.rows; i += gridDim.y) {
    const float* hi = parts + i * y.cols;
    const float* lo = lo_base + i * y.cols;
    float* o = y.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < y.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float s = hi[j] + lo[j];
      o[j] = bias != nullptr ? s + bias[j] : s;
    }
  }
}

__global__ void BroadcastRowsKernel(const float* bias, MatF32 y) {
  for (int64_t i = blockIdx.y; i < y.rows; i += gridDim.y) {
    float* o = y.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < y.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      o[j] = bias[j];
    }
  }
}

}  // namespace

cudaError_t LaunchSplitBf16(const Tensor& x, uint16_t* out, cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x);
  if (xs.rows == 0 || xs.cols == 0) return cudaSuccess;
  SplitBf16Kernel<<<RowColGrid(xs.rows, xs.cols), kThreads, 0, stream>>>(xs, out);
  return cudaGetLastError();
}

cudaError_t LaunchSumHalves(const float* parts, const float* bias, const Tensor& y,
                            cudaStream_t stream) {
  const MatF32 ys = AsMatF32(y);
  if (ys.rows == 0 || ys.cols == 0) return cudaSuccess;
  SumHalvesKernel<<<RowColGrid(ys.rows, ys.cols), kThreads, 0, stream>>>(parts, bias, ys);
  return cudaGetLastError();
}

cudaError_t LaunchBroadcastRows(const float* bias, const Tensor& y, cudaStream_t stream) {
  const MatF32 ys = AsMatF32(y);
  if (ys.rows == 0 || ys.cols == 0) return cudaSuccess;
  BroadcastRowsKernel<<<RowColGrid(ys.rows, ys.cols), kThreads, 0, stream>>>(bias, ys);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
