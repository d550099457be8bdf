// Backend::MatMulGrouped on the GPU: every expert's product in one launch, the group sizes read
// on the device (no host round trip per MoE layer). Built for decode-sized groups: each warp
// owns one output row of one expert and streams that weight row from memory once per
// kGroupedTokens tokens, 16 bytes per lane per load, dequantising bf16/int8 in registers; the
// f32 sum per output has a fixed order (lane split, then a butterfly), whatever the batch.
// Large groups (prefill) are better served by cuBLAS per expert; the engine picks.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kGroupedWarps = 8;   // output rows per block, one per warp
constexpr int kGroupedTokens = 8;  // tokens per pass over a weight row

// Weights per 16-byte load, and their widening to f32 (exact for all three types).
template <typename W>
struct Vec {
  static constexpr int kN = 16 / sizeof(W);
};

__device__ inline void Unpack(uint4 v, const float*, float* q) {
  q[0] = __uint_as_float(v.x);
  q[1] = __uint_as_float(v.y);
  q[2] = __uint_as_float(v.z);
  q[3] = __uint_as_float(v.w);
}

__device__ inline void Unpack(uint4 v, const uint16_t*, float* q) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // little-endian: the lower half is the earlier element
    q[2 * i] = __uint_as_float(words[i] << 16);
    q[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

__device__ inline void Unpack(uint4 v, const int8_t*, float* q) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      q[4 * i + b] = static_cast<float>(static_cast<int8_t>((words[i] >> (8 * b)) & 0xffu));
    }
  }
}

__device__ inline float Widen(float w) { return w; }
__device__ inline float Widen(uint16_t w) { return Bf16BitsToF32(w); }
__device__ inline float Widen(int8_t w) { return static_cast<float>(w); }

// x[0 .. kN) of a row at column j into registers: float4 loads when the rows are aligned.
template <int kN, bool kXVectorized>
__device__ inline void LoadX(const float* xr, float* out) {
  if constexpr (kXVectorized) {
#pragma unroll
    for (int u = 0; u < kN; u += 4) {
      const float4 v = *reinterpret_cast<const float4*>(xr + u);
      out[u] = v.x;
      out[u + 1] = v.y;
      out[u + 2] = v.z;
      out[u + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int u = 0; u < kN; ++u) out[u] = xr[u];
  }
}

// Grid (output-row tiles, experts); block = kGroupedWarps warps.
template <typename W, bool kVectorized, bool kXVectorized>
__global__ void GroupedGemvKernel(MatF32 x, const void* const* weights, const float* const* scales,
                                  int64_t ldw, const int32_t* counts, MatF32 y, int* error_word) {
  const int e = blockIdx.y;
  const W* w = static_cast<const W*>(weights[e]);
  const int32_t count = counts[e];
  if (count < 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0) RecordError(error_word, kGroupCountsOverrun);
    return;
  }
  if (w == nullptr || count == 0) return;
  int64_t offset = 0;
  for (int i = 0; i < e; ++i) offset += counts[i];  // at most kMaxGroupExperts terms
  if (offset < 0 || offset + count > x.rows) {
    if (blockIdx.x == 0 && threadIdx.x == 0) RecordError(error_word, kGroupCountsOverrun);
    return;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kGroupedWarps + warp;
  if (r >= y.cols) return;  // whole warps leave together
  const W* wr = w + r * ldw;
  const float s = scales != nullptr ? scales[e][r] : 1.0f;
  const int64_t k = x.cols;
  constexpr int kN = Vec<W>::kN;
  for (int32_t t0 = 0; t0 < count; t0 += kGroupedTokens) {
    const int nt = count - t0 < kGroupedTokens ? count - t0 : kGroupedTokens;
    const int64_t row0 = offset + t0;
    float acc[kGroupedTokens];
#pragma unroll
    for (int i = 0; i < kGroupedTokens; ++i) acc[i] = 0.0f;
    if constexpr (kVectorized) {
      for (int64_t j = static_cast<int64_t>(lane) * kN; j < k; j += 32 * kN) {
        float q[kN];
        Unpack(*reinterpret_cast<const uint4*>(wr + j), wr, q);
#pragma unroll
        for (int i = 0; i < kGroupedTokens; ++i) {
          if (i < nt) {
            float xv[kN];
            LoadX<kN, kXVectorized>(x.row(row0 + i) + j, xv);
            float sum = 0.0f;
#pragma unroll
            for (int u = 0; u < kN; ++u) sum += q[u] * xv[u];
            acc[i] += sum;
          }
        }
      }
    } else {
      for (int64_t j = lane; j < k; j += 32) {
        const float q = Widen(wr[j]);
#pragma unroll
        for (int i = 0; i < kGroupedTokens; ++i) {
          if (i < nt) acc[i] += q * x.row(row0 + i)[j];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kGroupedTokens; ++i) {
      if (i < nt) {  // nt is the same for the whole warp
        for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < kGroupedTokens; ++i) {
        if (i < nt) y.row(row0 + i)[r] = acc[i] * s;
      }
    }
  }
}

template <typename W>
cudaError_t Launch(const GroupedProduct& p, cudaStream_t stream) {
  const MatF32 xm = AsMatF32(*p.x), ym = AsMatF32(*p.y);
  const int64_t tiles = (p.m + kGroupedWarps - 1) / kGroupedWarps;
  JAMBA_CHECK(tiles <= INT32_MAX);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.experts));
  if (p.x_vectorized) {
    Launch(GroupedGemvKernel<W, true, true>, grid, 32 * kGroupedWarps, 0, stream, xm, p.weights,
           p.scales, p.ldw, p.counts, ym, p.error_word);
  } else if (p.vectorized) {
    Launch(GroupedGemvKernel<W, true, false>, grid, 32 * kGroupedWarps, 0, stream, xm, p.weights,
           p.scales, p.ldw, p.counts, ym, p.error_word);
  } else {
    Launch(GroupedGemvKernel<W, false, false>, grid, 32 * kGroupedWarps, 0, stream, xm, p.weights,
           p.scales, p.ldw, p.counts, ym, p.error_word);
  }
  return cudaGetLastError();
}

}  // namespace

int64_t GroupedVectorElements(DType weight_dtype) {
  return 16 / static_cast<int64_t>(DTypeSize(weight_dtype));
}

cudaError_t LaunchGroupedGemv(const GroupedProduct& p, cudaStream_t stream) {
  const MatF32 xm = AsMatF32(*p.x), ym = AsMatF32(*p.y);
  JAMBA_CHECK(xm.cols == p.k && ym.cols == p.m && ym.rows == xm.rows);
  JAMBA_CHECK(p.experts >= 1 && p.experts <= kMaxGroupExperts);
  JAMBA_CHECK(p.ldw >= p.k && p.weights != nullptr && p.counts != nullptr);
  JAMBA_CHECK(!p.x_vectorized || p.vectorized);
  if (p.m == 0 || xm.rows == 0) return cudaSuccess;
  switch (p.weight_dtype) {
    case DType::kF32:
      return Launch<float>(p, stream);
    case DType::kBF16:
      return Launch<uint16_t>(p, stream);
    case DType::kI8:
      JAMBA_CHECK(p.scales != nullptr);
      return Launch<int8_t>(p, stream);
    default:
      JAMBA_CHECK_MSG(false, "MatMulGrouped: weights must be f32, bf16 or i8");
  }
  return cudaErrorInvalidValue;
}

}  // namespace jamba::cuda
