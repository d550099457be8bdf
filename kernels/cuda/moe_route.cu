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

constexpr int kGroupThreads = 1024;  // one block; 32 warps
constexpr int kGroupWarps = kGroupThreads / 32;

// Stable counting sort of the slots by expert in one block. Slots are taken in chunks of
// kGroupThreads, in order; within a chunk a slot's rank among the earlier slots of its expert
// is its rank inside its warp (__match_any_sync) plus the counts of the earlier warps.
// Shared: warp_count [kGroupWarps][E], next [E] (the next free position of each expert).
__global__ void MoeGroupKernel(const int32_t* ids, const float* weights, int64_t slots, int k,
                               int e_count, int32_t* token, float* scale, int32_t* counts,
                               int* error_word) {
  int32_t* const shared = DynamicShared<int32_t>();
  int32_t* warp_count = shared;                    // [kGroupWarps * e_count]
  int32_t* next = shared + kGroupWarps * e_count;  // [e_count]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  for (int e = tid; e < e_count; e += blockDim.x) next[e] = 0;
  __syncthreads();
  // Counts, then each expert's first position.
  for (int64_t s = tid; s < slots; s += blockDim.x) {
    const int32_t e = ids[s];
    if (e >= 0 && e < e_count) {
      atomicAdd(&next[e], 1);
    } else {
      RecordError(error_word, kMoeExpertOutOfRange);
    }
  }
  __syncthreads();
  if (tid == 0) {
    int32_t at = 0;
    for (int e = 0; e < e_count; ++e) {
      counts[e] = next[e];
      const int32_t c = next[e];
      next[e] = at;
      at += c;
    }
  }
  __syncthreads();
  const unsigned lt_mask = (1u << lane) - 1u;
  for (int64_t base = 0; base < slots; base += kGroupThreads) {
    for (int i = tid; i < kGroupWarps * e_count; i += blockDim.x) warp_count[i] = 0;
    __syncthreads();
    const int64_t s = base + tid;
    int32_t e = s < slots ? ids[s] : -1;
    if (e >= e_count) e = -1;  // reported above; the slot is dropped
    const unsigned same = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(same & lt_mask);
    if (e >= 0 && rank == 0) warp_count[warp * e_count + e] = __popc(same);
    __syncthreads();
    // Per expert: the earlier warps' counts become offsets, and next[] advances by the chunk.
    for (int x = tid; x < e_count; x += blockDim.x) {
      int32_t run = next[x];
      for (int w = 0; w < kGroupWarps; ++w) {
        const int32_t c = warp_count[w * e_count + x];
        warp_count[w * e_count + x] = run;
        run += c;
      }
      next[x] = run;
    }
    __syncthreads();
    if (e >= 0) {
      const int32_t at = warp_count[warp * e_count + e] + rank;
      token[at] = static_cast<int32_t>(s / k);
      scale[at] = weights[s];
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t LaunchMoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token,
                           const Tensor& scale, const Tensor& counts, int* error_word,
                           cudaStream_t stream) {
  for (const Tensor* t : {&ids, &weights, &token, &scale, &counts}) {
    JAMBA_CHECK(t->device == Device::kCuda && t->contiguous());
  }
  JAMBA_CHECK(ids.dtype == DType::kI32 && ids.ndim == 2 && weights.dtype == DType::kF32);
  JAMBA_CHECK(weights.dim(0) == ids.dim(0) && weights.dim(1) == ids.dim(1));
  const int64_t slots = ids.numel(), e_count = counts.numel();
  JAMBA_CHECK(token.dtype == DType::kI32 && token.numel() == slots);
  JAMBA_CHECK(scale.dtype == DType::kF32 && scale.numel() == slots);
  JAMBA_CHECK(counts.dtype == DType::kI32 && e_count >= 1 && e_count <= kMaxGroupExperts);
  const size_t shared = static_cast<size_t>(kGroupWarps + 1) * e_count * sizeof(int32_t);
  Launch(MoeGroupKernel, 1, kGroupThreads, shared, stream, ids.ptr<int32_t>(), weights.ptr<float>(),
         slots, static_cast<int>(ids.dim(1)), static_cast<int>(e_count), token.ptr<int32_t>(),
         scale.ptr<float>(), counts.ptr<int32_t>(), error_word);
  return cudaGetLastError();
}

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
  Launch(MoeRouteKernel, blocks, threads, 0, stream, l, k, renormalize, ids.ptr<int32_t>(),
         ids.stride[0], w);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
