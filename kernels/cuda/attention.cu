// Causal GQA attention over the paged KV cache (f32). Two kernels share a launch:
//  - prefill: sequences with at least kTiledAttentionMinRows rows in the batch (where the
//    device's shared memory suffices for the head size) go through tiles of 32 query vectors
//    (the rows x query heads of one KV head) that stream the sequence's K/V in tiles of 64
//    positions through shared memory, with an online softmax: each K/V element is read from
//    memory once per tile of rows instead of once per row, and both products (Q K^T, P V) run
//    on the tensor cores in 3xTF32, which keeps f32 accuracy;
//  - rows of the other sequences (decode, short continuations): work split over (row, KV head,
//    chunk of visible positions), every query head that shares a KV head one warp of the same
//    block; a decode row at a long context spreads over up to 64 chunks ("flash decoding"),
//    merged by a third kernel. Decode reads each K/V element once per query head group, so
//    it is bound by memory, not arithmetic: CUDA cores suffice.
#include <mma.h>

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;
constexpr int kMaxChunks = 64;
constexpr int kMinChunkPositions = 256;

// The tiled prefill kernel's geometry.
constexpr int kTileQueries = 32;   // query vectors per block: rows x query heads of a KV head
constexpr int kTileKeys = 64;      // positions per K/V tile
constexpr int kTileThreads = 256;  // 8 warps; 8 threads per query vector in the softmax
constexpr int kTileLanes = kTileThreads / kTileQueries;
constexpr int kTilePad = 8;  // floats past a shared row: 32-byte steps, off the bank period
constexpr int kMma = 16;     // wmma's m and n
constexpr int kMmaK = 8;     // wmma's k for tf32
static_assert((kTileQueries / kMma) * (kTileKeys / kMma) == kTileThreads / 32,
              "one 16 x 16 block of S per warp");

using MmaA =
    wmma::fragment<wmma::matrix_a, kMma, kMma, kMmaK, wmma::precision::tf32, wmma::row_major>;
using MmaBRow =
    wmma::fragment<wmma::matrix_b, kMma, kMma, kMmaK, wmma::precision::tf32, wmma::row_major>;
using MmaBCol =
    wmma::fragment<wmma::matrix_b, kMma, kMma, kMmaK, wmma::precision::tf32, wmma::col_major>;
using MmaAcc = wmma::fragment<wmma::accumulator, kMma, kMma, kMmaK, float>;

// The head size padded for the tensor cores' 16-wide blocks.
__host__ __device__ inline int TiledHeadDim(int hd) { return (hd + kMma - 1) / kMma * kMma; }

// The tiled kernel's f32 regions: after the K/V offsets, rounded up to 32 bytes.
__device__ inline float* TiledFloats(int64_t* key_offset) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(key_offset + kTileKeys);
  return reinterpret_cast<float*>((p + 31) & ~uintptr_t{31});
}

struct Cache {
  float* k;
  float* v;
  int64_t block_stride;  // elements per block: block_size * nkv * hd
  int32_t block_size;
};

// Element offset of position `p` of KV head `kvh` of sequence `s` in the caches.
__device__ inline int64_t CacheOffset(const DeviceLayout& layout, const DeviceSeq& s,
                                      const Cache& c, int64_t p, int kvh, int nkv, int hd) {
  const int32_t block = layout.tables[layout.table_offsets[s.kv_seq] + p / c.block_size];
  return block * c.block_stride + (p % c.block_size) * static_cast<int64_t>(nkv) * hd +
         static_cast<int64_t>(kvh) * hd;
}

// Copies the new k/v rows to their cache slots. Grid: rows; threads over nkv * hd.
__global__ void KvAppendKernel(DeviceLayout layout, MatF32 k, MatF32 v, Cache c, int nkv, int hd) {
  for (int64_t row = blockIdx.x; row < layout.n_tokens; row += gridDim.x) {
    const int32_t si = layout.row_seq[row];
    if (si < 0) continue;
    const DeviceSeq s = layout.seqs[si];
    const int64_t pos = s.n_past + (row - s.token_begin);
    const int64_t base = CacheOffset(layout, s, c, pos, 0, nkv, hd);
    for (int64_t e = threadIdx.x; e < static_cast<int64_t>(nkv) * hd; e += blockDim.x) {
      c.k[base + e] = k.row(row)[e];
      c.v[base + e] = v.row(row)[e];
    }
  }
}

// Grid (row, KV head, chunk); block = 32 x rep threads, warp w = query head kvh * rep + w.
// Writes the normalised output when chunks == 1, else the chunk's (max, sum, unnormalised
// accumulator) to partials[((row * nh + h) * chunks + chunk) * (hd + 2)].
__global__ void AttendKernel(DeviceLayout layout, MatF32 q, Cache c, int nh, int nkv, int hd,
                             float scale, int chunks, int tiled_min_rows, MatF32 out,
                             float* partials) {
  const int64_t row = blockIdx.x;
  const int kvh = blockIdx.y;
  const int chunk = blockIdx.z;
  const int rep = nh / nkv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = kvh * rep + warp;
  const int32_t si = layout.row_seq[row];
  if (si < 0) return;
  const DeviceSeq s = layout.seqs[si];
  if (s.n_tokens >= tiled_min_rows) return;  // TiledAttendKernel's
  const int64_t visible = s.n_past + (row - s.token_begin) + 1;
  const int64_t per_chunk = (visible + chunks - 1) / chunks;
  const int64_t begin = chunk * per_chunk;
  const int64_t end = begin + per_chunk < visible ? begin + per_chunk : visible;

  float qr[kPerLane], acc[kPerLane];
  const float* qrow = q.row(row) + static_cast<int64_t>(h) * hd;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int j = lane + 32 * i;
    qr[i] = j < hd ? qrow[j] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t p = begin; p < end; ++p) {
    const int64_t off = CacheOffset(layout, s, c, p, kvh, nkv, hd);
    const float* kp = c.k + off;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + 32 * i;
      if (j < hd) dot += qr[i] * kp[j];
    }
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float score = dot * scale;
    if (score > m) {
      const float corr = expf(m - score);  // 0 for the first position (m = -inf)
      l *= corr;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[i] *= corr;
      m = score;
    }
    const float e = expf(score - m);
    l += e;
    const float* vp = c.v + off;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + 32 * i;
      if (j < hd) acc[i] += e * vp[j];
    }
  }
  if (chunks == 1) {
    float* o = out.row(row) + static_cast<int64_t>(h) * hd;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + 32 * i;
      if (j < hd) o[j] = acc[i] * inv;
    }
    return;
  }
  float* part = partials + ((row * nh + h) * chunks + chunk) * static_cast<int64_t>(hd + 2);
  if (lane == 0) {
    part[0] = m;
    part[1] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int j = lane + 32 * i;
    if (j < hd) part[2 + j] = acc[i];
  }
}

// x = big + small, each a tf32 value: big keeps x's top 11 significant bits, small the next
// 11. Three tensor-core products (small b_big + big b_small + big b_big; small x small, below
// 2^-22 of the product, is left out) then give an f32-accurate product ("3xTF32"), at a third
// of the tensor cores' tf32 rate, which is still several times the f32 rate of CUDA cores.
template <typename Frag>
__device__ inline void SplitTf32(const Frag& x, Frag* big, Frag* small) {
#pragma unroll
  for (int i = 0; i < x.num_elements; ++i) {
    const float b = wmma::__float_to_tf32(x.x[i]);
    big->x[i] = b;
    small->x[i] = wmma::__float_to_tf32(x.x[i] - b);
  }
}

// acc += a b over one k-step of 8, in 3xTF32 (a, b: the step's f32 operands, split here).
template <typename FragA, typename FragB>
__device__ inline void MmaTf32x3(const FragA& a, const FragB& b, MmaAcc* acc) {
  FragA a_big, a_small;
  FragB b_big, b_small;
  SplitTf32(a, &a_big, &a_small);
  SplitTf32(b, &b_big, &b_small);
  wmma::mma_sync(*acc, a_small, b_big, *acc);
  wmma::mma_sync(*acc, a_big, b_small, *acc);
  wmma::mma_sync(*acc, a_big, b_big, *acc);
}

// Grid (row tile, tiled sequence, KV head); kTileThreads threads (8 warps). A tile holds
// br = 32 / rep consecutive rows of one sequence; query vector v = r * rep + hh is row r's
// query head kvh * rep + hh. Per K/V tile of 64 positions:
//  1. S = Q K^T on the tensor cores: warp w computes the 16 x 16 block (w / 4, w % 4);
//  2. the online softmax: thread t serves query vector t / 8 and positions t % 8 + 8 u; it
//     turns its S entries into P and rescales its query's row of O by the max's correction;
//  3. O += P V on the tensor cores, warps over O's 16 x 16 blocks.
// O lives in shared memory, since the rescaling is per row and a fragment's element-to-row
// mapping is unspecified. Head dims are padded with zeros to a multiple of 16.
// Shared: K/V tile offsets [64] i64, then, 32-byte aligned (wmma's pointer rule), Q [32][ld],
// K [64][ld], V [64][ld], P [32][pld], O [32][ld] f32; ld = padded hd + 8 and pld = 64 + 8
// (multiples of 8 floats, off the bank period).
__global__ void __launch_bounds__(kTileThreads)
    TiledAttendKernel(DeviceLayout layout, MatF32 q, Cache c, int nh, int nkv, int hd, float scale,
                      int tiles_per_seq, int tiled_min_rows, MatF32 out) {
  int64_t* const key_offset = DynamicShared<int64_t>();  // cache offsets of the K/V tile
  const int rep = nh / nkv;
  const int br = kTileQueries / rep;
  // The longest causal tiles (the last rows of a sequence) first.
  const int tile = tiles_per_seq - 1 - static_cast<int>(blockIdx.x);
  const int kvh = blockIdx.z;
  const DeviceSeq s = layout.seqs[layout.tiled_seqs[blockIdx.y]];
  const int row0 = tile * br;                                     // within the sequence's rows
  if (s.n_tokens < tiled_min_rows || row0 >= s.n_tokens) return;  // whole blocks leave
  const int rows = min(br, s.n_tokens - row0);
  const int nq = rows * rep;

  const int hdp = TiledHeadDim(hd), ld = hdp + kTilePad;
  constexpr int pld = kTileKeys + kTilePad;
  float* qs = TiledFloats(key_offset);
  float* ks = qs + kTileQueries * ld;
  float* vs = ks + kTileKeys * ld;
  float* ps = vs + kTileKeys * ld;
  float* os = ps + kTileQueries * pld;

  const int t = threadIdx.x, warp = t / 32, qi = t / kTileLanes, g = t % kTileLanes;
  for (int e = t; e < kTileQueries * hdp; e += kTileThreads) {
    const int v = e / hdp, d = e % hdp;
    float value = 0.0f;
    if (v < nq && d < hd) {
      const int r = v / rep, hh = v % rep;
      value = q.row(s.token_begin + row0 + r)[static_cast<int64_t>(kvh * rep + hh) * hd + d];
    }
    qs[v * ld + d] = value;
    os[v * ld + d] = 0.0f;
  }
  const bool active = qi < nq;
  const int my_row = qi / rep;
  const int64_t my_pos = static_cast<int64_t>(s.n_past) + row0 + my_row;  // sees [0, my_pos]
  const int64_t tile_end = static_cast<int64_t>(s.n_past) + row0 + rows;  // exclusive
  float m = -INFINITY, l = 0.0f;

  for (int64_t p0 = 0; p0 < tile_end; p0 += kTileKeys) {
    const int np = tile_end - p0 < kTileKeys ? static_cast<int>(tile_end - p0) : kTileKeys;
    __syncthreads();  // Q and O are set; the previous tile's K/V/P/O and offset reads are done
    if (t < np) key_offset[t] = CacheOffset(layout, s, c, p0 + t, kvh, nkv, hd);
    __syncthreads();
    // Positions past np and dims past hd are zeros: P V must not meet stale NaNs there.
    for (int e = t; e < kTileKeys * hdp; e += kTileThreads) {
      const int pj = e / hdp, d = e % hdp;
      const bool in = pj < np && d < hd;
      const int64_t off = in ? key_offset[pj] + d : 0;
      ks[pj * ld + d] = in ? c.k[off] : 0.0f;
      vs[pj * ld + d] = in ? c.v[off] : 0.0f;
    }
    __syncthreads();
    {
      const int tm = warp / (kTileKeys / kMma), tn = warp % (kTileKeys / kMma);
      MmaAcc acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int k0 = 0; k0 < hdp; k0 += kMmaK) {
        MmaA a;
        MmaBCol b;
        wmma::load_matrix_sync(a, qs + tm * kMma * ld + k0, ld);
        wmma::load_matrix_sync(b, ks + tn * kMma * ld + k0, ld);
        MmaTf32x3(a, b, &acc);
      }
      wmma::store_matrix_sync(ps + tm * kMma * pld + tn * kMma, acc, pld, wmma::mem_row_major);
    }
    __syncthreads();
    float score[kTileKeys / kTileLanes];
    float tile_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kTileKeys / kTileLanes; ++u) {
      const int pj = g + kTileLanes * u;
      const bool visible = active && pj < np && p0 + pj <= my_pos;
      score[u] = visible ? ps[qi * pld + pj] * scale : -INFINITY;
      tile_max = fmaxf(tile_max, score[u]);
    }
    // The 8 threads of a query vector are consecutive lanes of one warp.
    for (int o = 1; o < kTileLanes; o <<= 1) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
    }
    const float m_new = fmaxf(m, tile_max);
    // While every score so far is masked (m_new = -inf) nothing accumulates.
    const float corr = m_new == -INFINITY ? 1.0f : expf(m - m_new);
    float psum = 0.0f;
#pragma unroll
    for (int u = 0; u < kTileKeys / kTileLanes; ++u) {
      const float p = score[u] == -INFINITY ? 0.0f : expf(score[u] - m_new);
      ps[qi * pld + g + kTileLanes * u] = p;
      psum += p;
    }
    for (int o = 1; o < kTileLanes; o <<= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
    l = l * corr + psum;
    m = m_new;
    for (int d = g; d < hdp; d += kTileLanes) os[qi * ld + d] *= corr;
    __syncthreads();
    const int col_blocks = hdp / kMma;
    for (int b = warp; b < (kTileQueries / kMma) * col_blocks; b += kTileThreads / 32) {
      const int tm = b / col_blocks, tn = b % col_blocks;
      float* const o_block = os + tm * kMma * ld + tn * kMma;
      MmaAcc acc;
      wmma::load_matrix_sync(acc, o_block, ld, wmma::mem_row_major);
      for (int k0 = 0; k0 < kTileKeys; k0 += kMmaK) {
        MmaA a;
        MmaBRow v;
        wmma::load_matrix_sync(a, ps + tm * kMma * pld + k0, pld);
        wmma::load_matrix_sync(v, vs + k0 * ld + tn * kMma, ld);
        MmaTf32x3(a, v, &acc);
      }
      wmma::store_matrix_sync(o_block, acc, ld, wmma::mem_row_major);
    }
  }
  __syncthreads();  // the last P V is in O
  if (!active) return;
  const int hh = qi % rep;
  float* o = out.row(s.token_begin + row0 + my_row) + static_cast<int64_t>(kvh * rep + hh) * hd;
  const float inv = 1.0f / l;
  for (int d = g; d < hd; d += kTileLanes) o[d] = os[qi * ld + d] * inv;
}

// Grid (row, head); threads over hd. Merges the chunks of one (row, head).
__global__ void MergeKernel(DeviceLayout layout, int nh, int hd, int chunks, int tiled_min_rows,
                            const float* partials, MatF32 out) {
  const int64_t row = blockIdx.x;
  const int h = blockIdx.y;
  const int32_t si = layout.row_seq[row];
  if (si < 0 || layout.seqs[si].n_tokens >= tiled_min_rows) return;
  const float* base = partials + (row * nh + h) * chunks * static_cast<int64_t>(hd + 2);
  float mx = -INFINITY;
  for (int c = 0; c < chunks; ++c) {
    const float* part = base + c * static_cast<int64_t>(hd + 2);
    if (part[1] != 0.0f) mx = fmaxf(mx, part[0]);  // NaN sums stay in and propagate
  }
  float total = 0.0f;
  for (int c = 0; c < chunks; ++c) {
    const float* part = base + c * static_cast<int64_t>(hd + 2);
    if (part[1] != 0.0f) total += part[1] * expf(part[0] - mx);
  }
  const float inv = 1.0f / total;
  for (int j = threadIdx.x; j < hd; j += blockDim.x) {
    float v = 0.0f;
    for (int c = 0; c < chunks; ++c) {
      const float* part = base + c * static_cast<int64_t>(hd + 2);
      if (part[1] != 0.0f) v += part[2 + j] * expf(part[0] - mx);
    }
    out.row(row)[static_cast<int64_t>(h) * hd + j] = v * inv;
  }
}

}  // namespace

size_t TiledAttentionSharedBytes(int32_t head_dim) {
  const size_t ld = static_cast<size_t>(TiledHeadDim(head_dim)) + kTilePad;
  // [key_offset | up to 31 bytes to align | Q | K | V | P | O], as TiledAttendKernel lays it
  // out (32 bytes of slack: enough whatever the dynamic shared memory's base alignment).
  return sizeof(int64_t) * kTileKeys + 32 +
         sizeof(float) *
             ((2 * kTileQueries + 2 * kTileKeys) * ld + kTileQueries * (kTileKeys + kTilePad));
}

int32_t AttentionChunks(const DeviceLayout& layout, int32_t num_kv_heads, int32_t sm_count,
                        int32_t tiled_min_rows) {
  const int64_t rows =
      tiled_min_rows == kTiledAttentionMinRows ? layout.short_rows : layout.n_tokens;
  const int64_t blocks = std::max<int64_t>(1, rows * num_kv_heads);
  const int64_t target = 4 * static_cast<int64_t>(std::max(sm_count, 1));
  int64_t chunks = (target + blocks - 1) / blocks;
  chunks = std::min<int64_t>(chunks, kMaxChunks);
  chunks =
      std::min<int64_t>(chunks, (layout.max_visible + kMinChunkPositions - 1) / kMinChunkPositions);
  return static_cast<int32_t>(std::max<int64_t>(chunks, 1));
}

int64_t AttentionPartialFloats(const DeviceLayout& layout, const AttentionParams& p,
                               int32_t chunks) {
  if (chunks <= 1) return 0;
  return static_cast<int64_t>(layout.n_tokens) * p.num_heads * chunks * (p.head_dim + 2);
}

cudaError_t LaunchAttention(const DeviceLayout& layout, const AttentionParams& p, int32_t chunks,
                            float* partials, int32_t max_shared_bytes, cudaStream_t stream) {
  const int nh = p.num_heads, nkv = p.num_kv_heads, hd = p.head_dim;
  JAMBA_CHECK(nh > 0 && nkv > 0 && nh % nkv == 0 && nh / nkv <= 32);
  JAMBA_CHECK(hd > 0 && hd <= kMaxHeadDim);
  JAMBA_CHECK(chunks >= 1 && chunks <= kMaxChunks);
  const MatF32 q = AsMatF32(p.q), k = AsMatF32(p.k), v = AsMatF32(p.v), out = AsMatF32(p.out);
  JAMBA_CHECK(q.cols == static_cast<int64_t>(nh) * hd && out.cols == q.cols);
  JAMBA_CHECK(k.cols == static_cast<int64_t>(nkv) * hd && v.cols == k.cols);
  JAMBA_CHECK(k.rows == q.rows && v.rows == q.rows && out.rows == q.rows);
  for (const Tensor* t : {&p.k_cache, &p.v_cache}) {
    JAMBA_CHECK(t->device == Device::kCuda && t->dtype == DType::kF32 && t->ndim == 4);
    JAMBA_CHECK(t->dim(1) == layout.kv_block_size && t->dim(2) == nkv && t->dim(3) == hd);
    JAMBA_CHECK(t->contiguous());
  }
  JAMBA_CHECK(p.v_cache.dim(0) == p.k_cache.dim(0));
  JAMBA_CHECK(chunks == 1 || partials != nullptr);
  if (layout.n_tokens == 0 || layout.num_seqs == 0) return cudaSuccess;
  const Cache c{p.k_cache.ptr<float>(), p.v_cache.ptr<float>(), p.k_cache.stride[0],
                layout.kv_block_size};
  const unsigned rows = static_cast<unsigned>(layout.n_tokens);
  Launch(KvAppendKernel, rows, 128, 0, stream, layout, k, v, c, nkv, hd);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const int tiled_min_rows = p.tiled_min_rows;
  if (layout.max_seq_tokens >= tiled_min_rows) {
    const int br = kTileQueries / (nh / nkv);
    const int64_t tiles_per_seq = (layout.max_seq_tokens + br - 1) / br;
    JAMBA_CHECK(tiles_per_seq <= INT32_MAX && layout.num_tiled_seqs >= 1 &&
                layout.num_tiled_seqs <= 65535 && nkv <= 65535);
    const size_t smem = TiledAttentionSharedBytes(hd);
    JAMBA_CHECK(smem <= static_cast<size_t>(max_shared_bytes));  // else tiled_min_rows is off
    if (smem > 48 * 1024) {
      // One value per device whatever the head size, so concurrent launches with different
      // head sizes cannot lower it under each other.
      const size_t most =
          std::min<size_t>(max_shared_bytes, TiledAttentionSharedBytes(kMaxHeadDim));
      e = cudaFuncSetAttribute(TiledAttendKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(most));
      if (e != cudaSuccess) return e;
    }
    Launch(TiledAttendKernel,
           dim3(static_cast<unsigned>(tiles_per_seq), static_cast<unsigned>(layout.num_tiled_seqs),
                static_cast<unsigned>(nkv)),
           kTileThreads, smem, stream, layout, q, c, nh, nkv, hd, p.scale,
           static_cast<int>(tiles_per_seq), tiled_min_rows, out);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(rows, static_cast<unsigned>(nkv), static_cast<unsigned>(chunks));
  Launch(AttendKernel, grid, 32 * (nh / nkv), 0, stream, layout, q, c, nh, nkv, hd, p.scale, chunks,
         tiled_min_rows, out, partials);
  e = cudaGetLastError();
  if (e != cudaSuccess || chunks == 1) return e;
  const int threads = std::min(((hd + 31) / 32) * 32, 256);
  Launch(MergeKernel, dim3(rows, static_cast<unsigned>(nh)), threads, 0, stream, layout, nh, hd,
         chunks, tiled_min_rows, partials, out);
  return cudaGetLastError();
}

}  // namespace jamba::cuda
