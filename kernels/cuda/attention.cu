// Causal GQA attention over the paged KV cache (f32). Two kernels share a launch:
//  - prefill: sequences with at least kTiledAttentionMinRows rows in the batch (where the
//    device's shared memory suffices for the head size) go through tiles of
//    32 query vectors (the rows x query heads of one KV head) that stream the sequence's K/V
//    in tiles of 32 positions through shared memory, with an online softmax: each K/V element
//    is read from memory once per tile of rows instead of once per row;
//  - rows of the other sequences (decode, short continuations): work split over (row, KV head,
//    chunk of visible positions), every query head that shares a KV head one warp of the same
//    block; a decode row at a long context spreads over up to 64 chunks ("flash decoding"),
//    merged by a third kernel.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;
constexpr int kMaxChunks = 64;
constexpr int kMinChunkPositions = 256;

// The tiled prefill kernel's geometry.
constexpr int kTileQueries = 32;   // query vectors per block: rows x query heads of a KV head
constexpr int kTileKeys = 32;      // positions per K/V tile
constexpr int kTileThreads = 256;  // 8 per query vector
constexpr int kTileLanes = kTileThreads / kTileQueries;
constexpr int kTileDims = kMaxHeadDim / kTileLanes;  // output dims per thread, at most
static_assert(kTileKeys == 4 * kTileLanes, "each thread scores 4 positions of a tile");

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

// Grid (row tile, tiled sequence, KV head); kTileThreads threads. A tile holds br = 32 / rep
// consecutive rows of one sequence; query vector v = r * rep + hh is row r's query head
// kvh * rep + hh. Thread t serves query vector t / 8: it scores positions 4 (t % 8) .. +3 of
// each K/V tile and accumulates output dims t % 8 + 8 j.
// Shared: K/V tile offsets [32] i64, Q [32][hd + 1], K [32][hd + 1] (padded: conflict-free
// column reads), V [32][hd], P [32][33].
__global__ void __launch_bounds__(kTileThreads)
    TiledAttendKernel(DeviceLayout layout, MatF32 q, Cache c, int nh, int nkv, int hd, float scale,
                      int tiles_per_seq, int tiled_min_rows, MatF32 out) {
  // All shared memory is dynamic (TiledAttentionSharedBytes), so the opt-in limit bounds it:
  // [key_offset: kTileKeys i64 | Q | K | V | P].
  int64_t* const smem_i64 = DynamicShared<int64_t>();
  int64_t* key_offset = smem_i64;  // cache offsets of the current K/V tile
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

  const int qld = hd + 1;
  float* qs = reinterpret_cast<float*>(smem_i64 + kTileKeys);
  float* ks = qs + kTileQueries * qld;
  float* vs = ks + kTileKeys * qld;
  float* ps = vs + kTileKeys * hd;
  constexpr int pld = kTileKeys + 1;

  const int t = threadIdx.x, qi = t / kTileLanes, g = t % kTileLanes;
  for (int e = t; e < kTileQueries * hd; e += kTileThreads) {
    const int v = e / hd, d = e % hd;
    float value = 0.0f;
    if (v < nq) {
      const int r = v / rep, hh = v % rep;
      value = q.row(s.token_begin + row0 + r)[static_cast<int64_t>(kvh * rep + hh) * hd + d];
    }
    qs[v * qld + d] = value;
  }
  const bool active = qi < nq;
  const int my_row = qi / rep;
  const int64_t my_pos = static_cast<int64_t>(s.n_past) + row0 + my_row;  // sees [0, my_pos]
  const int64_t tile_end = static_cast<int64_t>(s.n_past) + row0 + rows;  // exclusive
  float m = -INFINITY, l = 0.0f;
  float acc[kTileDims];
#pragma unroll
  for (int j = 0; j < kTileDims; ++j) acc[j] = 0.0f;

  for (int64_t p0 = 0; p0 < tile_end; p0 += kTileKeys) {
    const int np = tile_end - p0 < kTileKeys ? static_cast<int>(tile_end - p0) : kTileKeys;
    __syncthreads();  // Q is loaded; the previous tile's K/V/P and offset reads are done
    if (t < np) key_offset[t] = CacheOffset(layout, s, c, p0 + t, kvh, nkv, hd);
    __syncthreads();
    for (int e = t; e < np * hd; e += kTileThreads) {
      const int pj = e / hd, d = e % hd;
      const int64_t off = key_offset[pj];
      ks[pj * qld + d] = c.k[off + d];
      vs[pj * hd + d] = c.v[off + d];
    }
    __syncthreads();
    float dot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (active) {
      const float* qrow = qs + qi * qld;
      const float* k0 = ks + (4 * g) * qld;
      for (int d = 0; d < hd; ++d) {
        const float qv = qrow[d];
#pragma unroll
        for (int u = 0; u < 4; ++u) dot[u] += qv * k0[u * qld + d];
      }
    }
    float score[4];
    float tile_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int pj = 4 * g + u;
      const bool visible = active && pj < np && p0 + pj <= my_pos;
      score[u] = visible ? dot[u] * scale : -INFINITY;
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
    for (int u = 0; u < 4; ++u) {
      const float p = score[u] == -INFINITY ? 0.0f : expf(score[u] - m_new);
      ps[qi * pld + 4 * g + u] = p;
      psum += p;
    }
    for (int o = 1; o < kTileLanes; o <<= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
    l = l * corr + psum;
    m = m_new;
    __syncwarp();  // this query's P row, written by its 8 lanes, is read by all of them
#pragma unroll
    for (int j = 0; j < kTileDims; ++j) acc[j] *= corr;
    for (int pj = 0; pj < np; ++pj) {
      const float p = ps[qi * pld + pj];
      const float* vrow = vs + pj * hd;
#pragma unroll
      for (int j = 0; j < kTileDims; ++j) {
        const int d = g + kTileLanes * j;
        if (d < hd) acc[j] += p * vrow[d];
      }
    }
  }
  if (!active) return;
  const int hh = qi % rep;
  float* o = out.row(s.token_begin + row0 + my_row) + static_cast<int64_t>(kvh * rep + hh) * hd;
  const float inv = 1.0f / l;
#pragma unroll
  for (int j = 0; j < kTileDims; ++j) {
    const int d = g + kTileLanes * j;
    if (d < hd) o[d] = acc[j] * inv;
  }
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
  const size_t hd = static_cast<size_t>(head_dim);
  // [key_offset | Q | K | V | P], as TiledAttendKernel lays it out.
  return sizeof(int64_t) * kTileKeys +
         sizeof(float) * ((kTileQueries + kTileKeys) * (hd + 1) + kTileKeys * hd +
                          kTileQueries * (kTileKeys + 1));
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
