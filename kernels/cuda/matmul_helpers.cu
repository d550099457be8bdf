// Elementwise helpers of the cuBLAS matmul (kernels/cuda/cublas_matmul.cc): the exact
// three-term bf16 split of the activations (or their rounding), the sum of the partial
// products, and bias broadcasting.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

__global__ void SplitBf16Kernel(MatF32 x, int terms, uint16_t* out) {
  const int64_t plane = x.rows * x.cols;  // elements per term
  for (int64_t i = blockIdx.y; i < x.rows; i += gridDim.y) {
    const float* xi = x.row(i);
    uint16_t* t = out + i * x.cols;
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < x.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      // Each remainder is exact: r and bf16(r) agree in their leading bits, so r - bf16(r) is
      // an f32 with at most 16, then 8, significant bits; the last term is exact in bf16.
      float r = xi[j];
#pragma unroll
      for (int term = 0; term < kBf16SplitTerms; ++term) {
        if (term == terms) break;
        const uint16_t b = F32ToBf16BitsRne(r);
        t[term * plane + j] = b;
        r -= Bf16BitsToF32(b);
      }
    }
  }
}

__global__ void RoundToBf16Kernel(MatF32 x, MatF32 out) {
  for (int64_t i = blockIdx.y; i < x.rows; i += gridDim.y) {
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < x.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      out.row(i)[j] = Bf16BitsToF32(F32ToBf16BitsRne(x.row(i)[j]));
    }
  }
}

__global__ void SumSplitPartsKernel(const float* parts, const float* bias, MatF32 y) {
  const int64_t plane = y.rows * y.cols;
  for (int64_t i = blockIdx.y; i < y.rows; i += gridDim.y) {
    const float* p = parts + i * y.cols;
    float* o = y.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < y.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float s = p[j] + (p[plane + j] + p[2 * plane + j]);  // the small terms first
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

cudaError_t LaunchSplitBf16(const Tensor& x, int terms, uint16_t* out, cudaStream_t stream) {
  JAMBA_CHECK(terms == 1 || terms == kBf16SplitTerms);
  const MatF32 xs = AsMatF32(x);
  if (xs.rows == 0 || xs.cols == 0) return cudaSuccess;
  Launch(SplitBf16Kernel, RowColGrid(xs.rows, xs.cols), kThreads, 0, stream, xs, terms, out);
  return cudaGetLastError();
}

cudaError_t LaunchRoundToBf16(const Tensor& x, const Tensor& out, cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x), os = AsMatF32(out);
  JAMBA_CHECK(xs.rows == os.rows && xs.cols == os.cols);
  if (xs.rows == 0 || xs.cols == 0) return cudaSuccess;
  Launch(RoundToBf16Kernel, RowColGrid(xs.rows, xs.cols), kThreads, 0, stream, xs, os);
  return cudaGetLastError();
}

cudaError_t LaunchSumSplitParts(const float* parts, const float* bias, const Tensor& y,
                                cudaStream_t stream) {
  const MatF32 ys = AsMatF32(y);
  if (ys.rows == 0 || ys.cols == 0) return cudaSuccess;
  Launch(SumSplitPartsKernel, RowColGrid(ys.rows, ys.cols), kThreads, 0, stream, parts, bias, ys);
  return cudaGetLastError();
}

cudaError_t LaunchBroadcastRows(const float* bias, const Tensor& y, cudaStream_t stream) {
  const MatF32 ys = AsMatF32(y);
  if (ys.rows == 0 || ys.cols == 0) return cudaSuccess;
  Launch(BroadcastRowsKernel, RowColGrid(ys.rows, ys.cols), kThreads, 0, stream, bias, ys);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
