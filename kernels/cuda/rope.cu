// Rotary embedding (half-split convention) on the device. Positions and inverse frequencies
// come precomputed from the host (see LaunchRope in kernels/cuda/cuda_kernels.h).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

// One block per row; threads over the (head, frequency) pairs of the row.
__global__ void RopeKernel(MatF32 x, const int32_t* positions, const float* inv_freq,
                           int64_t head_dim) {
  const int64_t row = blockIdx.x;
  const int32_t pos = positions[row];
  if (pos < 0) return;
  const int64_t half = head_dim / 2, pairs = x.cols / 2;
  float* r = x.row(row);
  for (int64_t p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int64_t h = p / half, i = p % half;
    // The same f32 arithmetic as the CPU kernel (and transformers): angle = float(pos) *
    // inv_freq, then the accurate (not the fast-math) sine and cosine.
    const float angle = static_cast<float>(pos) * inv_freq[i];
    float sn, cs;
    sincosf(angle, &sn, &cs);
    float* v = r + h * head_dim;
    const float a = v[i], b = v[i + half];
    v[i] = a * cs - b * sn;
    v[i + half] = b * cs + a * sn;
  }
}

}  // namespace

cudaError_t LaunchRope(const Tensor& x, const int32_t* positions, const float* inv_freq,
                       int64_t head_dim, cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x);
  JAMBA_CHECK(head_dim > 0 && head_dim % 2 == 0 && xs.cols % head_dim == 0);
  if (xs.rows == 0 || xs.cols == 0) return cudaSuccess;
  JAMBA_CHECK(xs.rows <= 0x7fffffff);
  const int64_t pairs = xs.cols / 2;
  const int threads = pairs >= 1024 ? 1024 : (pairs >= 256 ? 256 : 64);
  Launch(RopeKernel, static_cast<unsigned>(xs.rows), threads, 0, stream, xs, positions, inv_freq,
         head_dim);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
