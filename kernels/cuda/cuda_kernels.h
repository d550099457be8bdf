// Host-side launchers of the CUDA kernels behind CudaBackend (kernels/cuda/cuda_backend.cc).
//
// This header is shared between nvcc-compiled .cu files and host-compiled .cc files, so it
// includes no abseil (or gRPC/protobuf) header: only the CUDA runtime API and the plain tensor
// types. Each launcher enqueues its kernel on `stream` and returns the launch status
// (cudaGetLastError after the launch); execution errors surface at the next synchronisation.
//
// All tensors are device views (Tensor::device == Device::kCuda) with the shapes and dtypes of
// the Backend method of the same name (kernels/backend.h); shape/dtype mismatches abort
// (JAMBA_CHECK) as on the CPU. Index-carrying kernels do not abort on bad indices (a device
// cannot): they skip the offending row and record a KernelError in `*error_word`, a device int
// the backend checks at Synchronize()/Download().
#ifndef JAMBA_KERNELS_CUDA_CUDA_KERNELS_H_
#define JAMBA_KERNELS_CUDA_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/row_sampling.h"
#include "kernels/tensor.h"

namespace jamba::cuda {

// Codes recorded in the device error word. The first recorded code wins.
enum KernelError : int {
  kKernelOk = 0,
  kEmbedIdOutOfRange = 1,
  kGatherIndexOutOfRange = 2,
  kScatterIndexOutOfRange = 3,
  kMoeExpertOutOfRange = 4,
  kGroupCountsOverrun = 5,
};
const char* KernelErrorName(int code);

// out[i, :] = table[ids[i], :]; table f32 or bf16 (widened exactly).
cudaError_t LaunchEmbed(const Tensor& table, const Tensor& ids, const Tensor& out, int* error_word,
                        cudaStream_t stream);
// weight: device [d] f32, or nullptr for a weightless norm. The sum of squares is accumulated
// in f32 (the CPU kernel uses f64), the scale is 1 / sqrtf (IEEE-rounded, not rsqrtf).
cudaError_t LaunchRmsNorm(const Tensor& x, const float* weight, float eps, const Tensor& out,
                          cudaStream_t stream);
// Consecutive column groups of a row normalised separately (Backend::RmsNormGroups).
struct NormGroups {
  static constexpr int kMaxGroups = 4;  // kMaxNormGroups of kernels/backend.h
  int count = 0;
  int64_t offset[kMaxGroups] = {};  // first column of each group (consecutive groups)
  int64_t width[kMaxGroups] = {};
  const float* weight[kMaxGroups] = {};  // device [width] f32, or nullptr
};
cudaError_t LaunchRmsNormGroups(const Tensor& x, const NormGroups& groups, float eps,
                                cudaStream_t stream);
cudaError_t LaunchSiluMul(const Tensor& gate, const Tensor& up, const Tensor& out,
                          cudaStream_t stream);
cudaError_t LaunchAdd(const Tensor& a, const Tensor& acc, cudaStream_t stream);
cudaError_t LaunchZero(const Tensor& t, cudaStream_t stream);
cudaError_t LaunchGatherRows(const Tensor& x, const Tensor& idx, const Tensor& out, int* error_word,
                             cudaStream_t stream);
// Sequential semantics as on the CPU: each output column is updated by one thread, visiting
// rows in index order, so the summation order is fixed.
cudaError_t LaunchScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                                   const Tensor& out, int* error_word, cudaStream_t stream);
// In-place half-split rotary embedding of x [n, heads * head_dim] f32.
// positions: device [n] i32, the absolute position of each row, or -1 for rows the batch
// layout does not cover (left untouched). inv_freq: device [head_dim / 2] f32, computed on the
// host exactly as the CPU kernel does (device powf differs in the last bits, and the angle
// pos * inv_freq magnifies that at long positions).
cudaError_t LaunchRope(const Tensor& x, const int32_t* positions, const float* inv_freq,
                       int64_t head_dim, cudaStream_t stream);
// One thread per token: softmax in f32, top-k by repeated selection (descending, ties to the
// lower expert id), optional renormalisation.
cudaError_t LaunchMoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
                           const Tensor& weights, cudaStream_t stream);

// SampleRows of kernels/backend.h: one block per row (kernels/cuda/sample_rows_algo.h).
// params: device [rows] RowSampling, valid (RowSamplingValid).
cudaError_t LaunchSampleRows(const Tensor& x, const RowSampling* params, const Tensor& out,
                             cudaStream_t stream);

// kMaxMoeExperts of kernels/backend.h (which .cu files may not include; checked equal there).
inline constexpr int64_t kMaxGroupExperts = 256;

// Backend::MatMulGrouped: one launch for every expert (kernels/cuda/grouped_gemv.cu).
struct GroupedProduct {
  const Tensor* x = nullptr;  // [rows, k] f32 (device)
  const Tensor* y = nullptr;  // [rows, m] f32 (device, row-strided view allowed)
  int64_t m = 0, k = 0;
  int64_t ldw = 0;                       // row stride of every expert's [m, k] weights
  DType weight_dtype = DType::kBF16;     // f32, bf16 or i8
  bool vectorized = false;               // every weight row 16-byte aligned, k a multiple of
                                         // GroupedVectorElements(weight_dtype)
  bool x_vectorized = false;             // vectorized, and every row of x 16-byte aligned
  int32_t experts = 0;                   // E <= kMaxGroupExperts
  const void* const* weights = nullptr;  // device [E] pointers; null: expert not held here
  const float* const* scales = nullptr;  // device [E] pointers to [m] f32 (i8 only), or null
  const int32_t* counts = nullptr;       // device [E] group sizes
  int* error_word = nullptr;             // kGroupCountsOverrun: counts < 0 or beyond x
};
// Weights per 16-byte load for a weight dtype (the vectorized path's unit).
int64_t GroupedVectorElements(DType weight_dtype);
cudaError_t LaunchGroupedGemv(const GroupedProduct& p, cudaStream_t stream);
// MoeGroup of kernels/backend.h: a stable counting sort in one block (slots in chunks of 1024,
// ranks inside a warp from __match_any_sync). An expert id outside [0, E) drops its slot and
// records kMoeExpertOutOfRange.
cudaError_t LaunchMoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token,
                           const Tensor& scale, const Tensor& counts, int* error_word,
                           cudaStream_t stream);

// ---- Ragged batches on the device (kernels/cuda/device_layout.h uploads them) -------------
struct DeviceSeq {
  int32_t token_begin;
  int32_t n_tokens;
  int32_t n_past;
  int32_t mamba_slot;
  int32_t kv_seq;
};

// A BatchLayout in device memory, validated on the host before upload (every slot, block
// table entry and row range in bounds), so kernels index without checks. Passed by value.
struct DeviceLayout {
  const DeviceSeq* seqs;         // [num_seqs]
  const int32_t* row_seq;        // [n_tokens]: the sequence of each row, -1 if none
  const int32_t* table_offsets;  // [num_tables + 1]: block_tables[i] is tables[off[i], off[i+1])
  const int32_t* tables;         // the block tables, concatenated
  const int32_t* tiled_seqs;     // [num_tiled_seqs]: sequences with >= kTiledAttentionMinRows rows
  int32_t num_seqs;
  int32_t num_tiled_seqs;
  int32_t n_tokens;
  int32_t kv_block_size;
  // Host-side summaries, for launch geometry.
  int32_t max_seq_tokens;  // largest n_tokens of a sequence
  int32_t max_visible;     // largest n_past + n_tokens
  int32_t short_rows;      // rows of sequences with < kTiledAttentionMinRows rows
};

// Attention: sequences with at least this many rows in a batch take the tiled prefill kernel
// (where the GPU's shared memory allows it for the head size).
inline constexpr int32_t kTiledAttentionMinRows = 16;

// MambaConv of kernels/backend.h. x [n, Di] (column view allowed), w [Di, K], bias [Di] or
// nullptr, state [slots, Di, K-1], out [n, Di]; out must not overlap x. Two kernels: the
// outputs (one thread per row and channel), then the new windows (one thread per sequence
// and channel, after every output has read the old window).
cudaError_t LaunchMambaConv(const DeviceLayout& layout, const Tensor& x, const Tensor& w,
                            const float* bias, const Tensor& state, const Tensor& out,
                            cudaStream_t stream);
// MambaScan of kernels/backend.h (the tensors of MambaScanArgs, same shapes). Each channel's
// N states are spread over min(32, N rounded up to a power of two) lanes of a warp; every
// lane walks the sequence's tokens in order (the recurrence is sequential in time), and y
// sums over the states with warp shuffles. Parallel over sequences, channels and states.
cudaError_t LaunchMambaScan(const DeviceLayout& layout, const Tensor& x, const Tensor& dt,
                            const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                            const Tensor& z, const Tensor& state, const Tensor& y,
                            cudaStream_t stream);

// Attention of kernels/backend.h, split over the visible positions ("flash decoding"): each
// (row, KV head, chunk) block computes every query head of that KV head over its chunk of
// positions with an online softmax; with more than one chunk a second kernel merges the
// chunks' partial results. `chunks` (>= 1) comes from AttentionChunks; `partials` holds
// AttentionPartialFloats(...) floats (unused when chunks == 1).
struct AttentionParams {
  Tensor q, k, v, k_cache, v_cache, out;  // shapes as AttentionArgs
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;
  // Sequences with at least this many rows go through the tiled kernel: kTiledAttentionMinRows,
  // or INT32_MAX where TiledAttentionSharedBytes(head_dim) exceeds what a block may have.
  int32_t tiled_min_rows = kTiledAttentionMinRows;
};
// Dynamic shared memory of the tiled prefill kernel for a head size: ~112 KiB at 128, ~208 KiB
// at 256 (more than an A100's 163 KiB, where such heads take the untiled kernel).
size_t TiledAttentionSharedBytes(int32_t head_dim);
// Chunks per row of the row kernel: enough (row, KV head, chunk) blocks to fill `sm_count` SMs
// a few times over, at most 64, each chunk at least 256 positions. Rows of tiled sequences
// (tiled_min_rows as in AttentionParams) do not count.
int32_t AttentionChunks(const DeviceLayout& layout, int32_t num_kv_heads, int32_t sm_count,
                        int32_t tiled_min_rows);
int64_t AttentionPartialFloats(const DeviceLayout& layout, const AttentionParams& p,
                               int32_t chunks);
// Writes the new rows of k/v into the caches, then attends. max_shared_bytes: the largest
// dynamic shared memory a block of this device may opt into
// (cudaDevAttrMaxSharedMemoryPerBlockOptin).
cudaError_t LaunchAttention(const DeviceLayout& layout, const AttentionParams& p, int32_t chunks,
                            float* partials, int32_t max_shared_bytes, cudaStream_t stream);

// ---- int8 weights (Backend::MatMulInt8) ------------------------------------------------
// Batches up to this many rows use the GEMV kernel; larger ones convert the weights to bf16
// in row chunks and use cuBLAS.
inline constexpr int64_t kInt8GemvMaxRows = 8;
// y = scale[r] * (x . w[r]) (+ bias[r]): one warp per output row, int8 weights widened in
// registers. x [n <= kInt8GemvMaxRows, k] f32, w [m, k] i8, scale/bias: device [m] f32 (bias
// may be nullptr), y [n, m] f32.
cudaError_t LaunchInt8Gemv(const Tensor& x, const Tensor& w, const float* scale, const float* bias,
                           const Tensor& y, cudaStream_t stream);
// out[r - row0, :] = bf16(w[r, :]) for rows [row0, row0 + rows): exact (|w| <= 127).
// out: device [rows, k] bf16 contiguous.
cudaError_t LaunchInt8ToBf16(const Tensor& w, int64_t row0, int64_t rows, uint16_t* out,
                             cudaStream_t stream);
// y[i, j] = y[i, j] * scale[j] (+ bias[j]). y [n, m] f32 (row-strided view allowed).
cudaError_t LaunchScaleColumns(const Tensor& y, const float* scale, const float* bias,
                               cudaStream_t stream);

// ---- Helpers of the cuBLAS matmul (kernels/cuda/cublas_matmul.cc) ----------------------
// x as a sum of kBf16SplitTerms bf16 terms: t0 = bf16(x) (round to nearest even),
// t1 = bf16(x - t0), t2 = x - t0 - t1 (8 + 8 + 8 significant bits: the sum is x exactly for
// 2^-100 <= |x| < 2^127, below which bf16's subnormals drop bits of t2); or, with terms = 1,
// t0 alone (x rounded: MatMulPrecision::kBf16). out: device [terms * n, k] bf16 (as
// uint16_t), rows [i n, (i + 1) n) = t_i.
inline constexpr int kBf16SplitTerms = 3;
cudaError_t LaunchSplitBf16(const Tensor& x, int terms, uint16_t* out, cudaStream_t stream);
// out = x rounded to bf16 (nearest even), as f32. x, out [n, k] f32 (row-strided views).
cudaError_t LaunchRoundToBf16(const Tensor& x, const Tensor& out, cudaStream_t stream);
// y[i, :] = parts[i, :] + (parts[n + i, :] + parts[2n + i, :]) (+ bias): the products of the
// three terms. parts: device [3n, m] f32 contiguous; bias: device [m] f32 or nullptr;
// y [n, m] f32 (row-strided view allowed).
cudaError_t LaunchSumSplitParts(const float* parts, const float* bias, const Tensor& y,
                                cudaStream_t stream);
// y[i, :] = bias for every row. bias: device [m] f32; y [n, m] f32.
cudaError_t LaunchBroadcastRows(const float* bias, const Tensor& y, cudaStream_t stream);

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_CUDA_KERNELS_H_
