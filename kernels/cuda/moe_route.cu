// MoE router on the device: softmax over the experts and top-k, one thread per token.
// Expert counts are small (8 to 16 for Mixtral/Jamba), so each thread rescans the logits row
// instead of keeping the probabilities in registers or shared memory.
#include <cfloat>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

// True if (p, e) comes strictly after (prev_p, prev_e) in the order "probability descending,
// then expert id ascending".
__device__ inline bool After(float p, int e, float prev_p, int prev_e) {
  return p < prev_p || (p == prev_p && e > prev_e);
}

__global__ void MoeRouteKernel(MatF32 logits, int k, bool renormalize, int32_t* ids, int64_t ids_ld,
                               MatF32 weights) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= logits.rows) return;
  const float* l = logits.row(t);
  const int e_count = static_cast<int>(logits.cols);
  float mx = l[0];
  for (int e = 1; e < e_count; ++e) mx = fmaxf(mx, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < e_count; ++e) sum += expf(l[e] - mx);
  int32_t* id_row = ids + t * ids_ld;
  float* w_row = weights.row(t);
  float prev_p = FLT_MAX;
  int prev_e = -1;
  float total = 0.0f;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    float best_p = 0.0f;
    for (int e = 0; e < e_count; ++e) {
      const float p = expf(l[e] - mx) / sum;
      if (j > 0 && !After(p, e, prev_p, prev_e)) continue;
      if (best < 0 || p > best_p) {  // strict: ties keep the lower id
        best = e;
        best_p = p;
      }
    }
    id_row[j] = best;
    w_row[j] = best_p;
    total += best_p;
    prev_p = best_p;
    prev_e = best;
  }
  if (renormalize) {
    for (int j = 0; j < k; ++j) w_row[j] /= total;
  }
}

}  // namespace

cudaError_t LaunchMoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
                           const Tensor& weights, cudaStream_t stream) {
  const MatF32 l = AsMatF32(logits), w = AsMatF32(weights);
  JAMBA_CHECK(ids.device == Device::kCuda && ids.dtype == DType::kI32 && ids.ndim == 2);
  JAMBA_CHECK(ids.stride[1] == 1);
  JAMBA_CHECK(k >= 1 && k <= l.cols && l.cols <= 0x7fffffff);
  JAMBA_CHECK(ids.shape[0] == l.rows && ids.shape[1] == k && w.rows == l.rows && w.cols == k);
  if (l.rows == 0) return cudaSuccess;
  const int threads = 128;
  const unsigned blocks = static_cast<unsigned>((l.rows + threads - 1) / threads);
  MoeRouteKernel<<<blocks, threads, 0, stream>>>(l, k, renormalize, ids.ptr<int32_t>(),
                                                 ids.stride[0], w);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
