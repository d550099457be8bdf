// Kernels of the int8-weight product (Backend::MatMulInt8) on the GPU: a GEMV-style kernel that
// dequantises inside the dot products for decode-sized batches, and the two helpers of the
// prefill path (int8 -> bf16 conversion, exact for integers up to 127, then a cuBLAS product,
// then the per-row scale).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kGemvWarps = 8;  // output rows per block, one per warp

// One warp per output row r: lanes stride over k four int8 weights at a time, every token's
// partial dot product in a register; warp sums; lane 0 writes scale[r] * dot + bias[r].
template <int N>
__global__ void Int8GemvKernel(MatF32 x, const int8_t* w, int64_t ldw, const float* scale,
                               const float* bias, MatF32 y) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (r >= y.cols) return;  // whole warps leave together
  const int64_t k = x.cols;
  const int8_t* wr = w + r * ldw;
  float acc[N];
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = 0.0f;
  const bool vec = (k % 4 == 0) && (ldw % 4 == 0) && (reinterpret_cast<uintptr_t>(w) % 4 == 0);
  if (vec) {
    const char4* w4 = reinterpret_cast<const char4*>(wr);
    for (int64_t j4 = lane; j4 < k / 4; j4 += 32) {
      const char4 q = w4[j4];
      const float q0 = q.x, q1 = q.y, q2 = q.z, q3 = q.w;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        if (i < x.rows) {
          const float* xr = x.row(i) + 4 * j4;
          acc[i] += q0 * xr[0] + q1 * xr[1] + q2 * xr[2] + q3 * xr[3];
        }
      }
    }
  } else {
    for (int64_t j = lane; j < k; j += 32) {
      const float q = wr[j];
#pragma unroll
      for (int i = 0; i < N; ++i) {
        if (i < x.rows) acc[i] += q * x.row(i)[j];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
  }
  if (lane == 0) {
    const float s = scale[r], b = bias != nullptr ? bias[r] : 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      if (i < x.rows) y.row(i)[r] = acc[i] * s + b;
    }
  }
}

__global__ void Int8ToBf16Kernel(const int8_t* w, int64_t rows, int64_t cols, int64_t ldw,
                                 uint16_t* out) {
  const int64_t total = rows * cols;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    out[e] = F32ToBf16BitsRne(static_cast<float>(w[r * ldw + c]));  // exact: |q| <= 127
  }
}

__global__ void ScaleColumnsKernel(MatF32 y, const float* scale, const float* bias) {
  for (int64_t i = blockIdx.y; i < y.rows; i += gridDim.y) {
    float* row = y.row(i);
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < y.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      row[j] = row[j] * scale[j] + (bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

}  // namespace

cudaError_t LaunchInt8Gemv(const Tensor& x, const Tensor& w, const float* scale, const float* bias,
                           const Tensor& y, cudaStream_t stream) {
  const MatF32 xm = AsMatF32(x), ym = AsMatF32(y);
  JAMBA_CHECK(w.device == Device::kCuda && w.dtype == DType::kI8 && w.ndim == 2 &&
              w.stride[1] == 1);
  JAMBA_CHECK(w.dim(1) == xm.cols && ym.cols == w.dim(0) && ym.rows == xm.rows);
  JAMBA_CHECK(xm.rows <= kInt8GemvMaxRows);
  if (xm.rows == 0 || ym.cols == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((ym.cols + kGemvWarps - 1) / kGemvWarps);
  const int8_t* wp = w.ptr<int8_t>();
  const int64_t ldw = w.stride[0];
  if (xm.rows <= 1) {
    Launch(Int8GemvKernel<1>, blocks, 32 * kGemvWarps, 0, stream, xm, wp, ldw, scale, bias, ym);
  } else if (xm.rows <= 4) {
    Launch(Int8GemvKernel<4>, blocks, 32 * kGemvWarps, 0, stream, xm, wp, ldw, scale, bias, ym);
  } else {
    Launch(Int8GemvKernel<kInt8GemvMaxRows>, blocks, 32 * kGemvWarps, 0, stream, xm, wp, ldw, scale,
           bias, ym);
  }
  return cudaGetLastError();
}

cudaError_t LaunchInt8ToBf16(const Tensor& w, int64_t row0, int64_t rows, uint16_t* out,
                             cudaStream_t stream) {
  JAMBA_CHECK(w.device == Device::kCuda && w.dtype == DType::kI8 && w.ndim == 2 &&
              w.stride[1] == 1);
  JAMBA_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= w.dim(0));
  const int64_t total = rows * w.dim(1);
  if (total == 0) return cudaSuccess;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 4096));
  Launch(Int8ToBf16Kernel, blocks, kThreads, 0, stream, w.ptr<int8_t>() + row0 * w.stride[0], rows,
         w.dim(1), w.stride[0], out);
  return cudaGetLastError();
}

cudaError_t LaunchScaleColumns(const Tensor& y, const float* scale, const float* bias,
                               cudaStream_t stream) {
  const MatF32 ym = AsMatF32(y);
  if (ym.rows == 0 || ym.cols == 0) return cudaSuccess;
  Launch(ScaleColumnsKernel, RowColGrid(ym.rows, ym.cols), kThreads, 0, stream, ym, scale, bias);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
