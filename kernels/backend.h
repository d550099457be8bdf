// The compute backend interface: every op of the engine, on one device and one stream.
//
// Contract:
//  - Ops are enqueued on the backend's stream in call order and may run asynchronously; results
//    are visible to the host only after Download() or Synchronize(). The CPU backend runs each
//    op before returning. No op returns data to the host, so a forward pass has no host round
//    trip per op.
//  - All Tensors passed to ops live on this backend's device. Activations are f32; large weight
//    matrices are f32 or bf16, MoE expert matrices optionally int8 with per-row scales
//    (accumulation always in f32); small parameter vectors are f32.
//  - Shape and dtype mismatches are programmer errors (checked, abort). Data-dependent failures
//    (allocation, device faults) are reported as absl::Status by the memory functions and by
//    Synchronize().
//  - A backend is used by one thread at a time (one stream per worker). It may use several
//    cores/SMs internally.
#ifndef JAMBA_KERNELS_BACKEND_H_
#define JAMBA_KERNELS_BACKEND_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/batch_layout.h"
#include "kernels/row_sampling.h"
#include "kernels/tensor.h"

namespace jamba {

// An owned, contiguous device allocation. Destroying it frees the memory (after the stream has
// finished with it, for asynchronous backends).
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  const Tensor& tensor() const { return tensor_; }

 protected:
  Tensor tensor_;
};

// Bytes of a dense tensor of `dtype` and `shape`, for Backend::Allocate implementations;
// InvalidArgument for a negative dimension.
inline absl::StatusOr<size_t> DenseBytes(DType dtype, std::initializer_list<int64_t> shape) {
  size_t n = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0) return absl::InvalidArgumentError("negative dimension in allocation");
    n *= static_cast<size_t>(d);
  }
  return n;
}

struct MambaScanArgs {
  Tensor x;      // [n, Di] f32: conv output after SiLU (the SSM input x')
  Tensor dt;     // [n, Di] f32: dt_proj output including its bias, before softplus
  Tensor A;      // [Di, N] f32: -exp(A_log)
  Tensor B;      // [n, N] f32 (may be a column view of the x_proj output)
  Tensor C;      // [n, N] f32 (may be a column view)
  Tensor D;      // [Di] f32
  Tensor z;      // [n, Di] f32 gate, before SiLU (may be a column view of in_proj output)
  Tensor state;  // [slots, Di, N] f32 pool, read at n_past > 0 and overwritten with h_last
  Tensor y;      // [n, Di] f32 out: (sum_n h[d,n] C[n] + D[d] x[d]) * silu(z[d])
};

struct AttentionArgs {
  Tensor q;        // [n, nh * hd] f32 (RoPE already applied where the model uses it)
  Tensor k;        // [n, nkv * hd] f32, new keys: written to the cache before attending
  Tensor v;        // [n, nkv * hd] f32
  Tensor k_cache;  // [num_blocks, block_size, nkv, hd] f32 pool of this layer
  Tensor v_cache;  // same shape as k_cache
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // query head h uses KV head h / (num_heads / num_kv_heads)
  int64_t head_dim = 0;
  float scale = 1.0f;  // applied to q.k
  Tensor out;          // [n, nh * hd] f32: causal attention over positions [0, n_past + i]
};

// Memory of a device with its own memory (a GPU), in bytes.
struct DeviceMemoryInfo {
  int64_t used_bytes = 0;  // by every process on the device
  int64_t total_bytes = 0;
};

// The most column groups RmsNormGroups takes.
inline constexpr int64_t kMaxNormGroups = 4;

// The largest expert count MoeGroup supports (Jamba and Mixtral have 16 and 8).
inline constexpr int64_t kMaxMoeExperts = 256;

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  // The device's memory, for metrics; nullopt when the backend computes in host memory
  // (the process's resident memory covers it). Unlike the ops, callable from any thread.
  virtual std::optional<DeviceMemoryInfo> MemoryInfo() const { return std::nullopt; }

  // ---- Memory ---------------------------------------------------------------------------
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      DType dtype, std::initializer_list<int64_t> shape) = 0;
  // Copies `bytes` of host memory into the contiguous device tensor `dst`.
  virtual absl::Status Upload(const void* host, size_t bytes, const Tensor& dst) = 0;
  // Copies a contiguous device tensor to host memory (waits for preceding ops).
  virtual absl::Status Download(const Tensor& src, void* host) = 0;
  virtual absl::Status Synchronize() = 0;

  // ---- Ops (rows = first dimension, n = number of tokens) ------------------------------
  // out[i, :] = table[ids[i], :]. table [V, H] f32|bf16, ids [n] i32 (in range), out [n, H] f32.
  virtual void Embed(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;
  // out[i] = x[i] * rsqrt(mean(x[i]^2) + eps) * weight. x, out [n, d] f32 (row-strided views
  // allowed; out may alias x); weight [d] f32, or nullptr for a weightless norm.
  virtual void RmsNorm(const Tensor& x, const Tensor* weight, float eps, const Tensor& out) = 0;
  // RmsNorm of consecutive column groups of x, in place: group g covers the columns
  // [o_g, o_g + widths[g]) (o_0 = 0, o_{g+1} = o_g + widths[g]) and is normalised over its own
  // columns with weights[g] ([widths[g]] f32, or nullptr), as RmsNorm of that column view
  // would. x [n, sum(widths)] f32 (row-strided view allowed); 1 to kMaxNormGroups groups,
  // each at least one column. One pass for the dt/B/C norms of a Mamba layer.
  virtual void RmsNormGroups(const Tensor& x, absl::Span<const int64_t> widths,
                             absl::Span<const Tensor* const> weights, float eps) = 0;
  // y = x w^T (+ bias). x [n, k] f32, w [m, k] f32|bf16 (row stride = k), bias [m] f32 or
  // nullptr, y [n, m] f32 (row-strided view allowed). y must not alias x.
  virtual void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) = 0;
  // y = x (diag(scale) w)^T (+ bias): w [m, k] i8 quantised per output row (symmetric, as
  // Jamba-1.5's ExpertsInt8), dequantised inside the product: y[i, r] = scale[r] *
  // sum_j x[i, j] w[r, j] (+ bias[r]), the sum in f32. x [n, k] f32, scale [m] f32, bias [m]
  // f32 or nullptr, y [n, m] f32 (row-strided view allowed). y must not alias x.
  virtual void MatMulInt8(const Tensor& x, const Tensor& w, const Tensor& scale, const Tensor* bias,
                          const Tensor& y) = 0;
  // The experts' products over rows grouped by expert (MoeGroup's order), with the group sizes
  // read on the device, so the host need not wait for them: for every expert e,
  //   y.Rows(o_e, counts[e]) = x.Rows(o_e, counts[e]) w[e]^T   (MatMul, or MatMulInt8 with
  //   scale[e] for i8 weights), where o_e = counts[0] + ... + counts[e - 1].
  // w: one matrix per expert, all [m, k] of one dtype (f32|bf16|i8), or an empty Tensor (data
  // null) for an expert this process does not hold: its rows of y are left untouched.
  // scale: per expert [m] f32 for i8 weights, else empty (size 0). counts [E] i32 (contiguous,
  // E = w.size()); x [rows, k] f32 with rows >= sum(counts); y [rows, m] f32 (row-strided view
  // allowed), not aliasing x. A device backend records an error if the counts overrun x.
  virtual void MatMulGrouped(const Tensor& x, absl::Span<const Tensor> w,
                             absl::Span<const Tensor> scale, const Tensor& counts,
                             const Tensor& y) = 0;
  // out = silu(gate) * up, elementwise; all [n, d] f32 (strided views allowed; out may alias).
  virtual void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // acc += a; both [n, d] f32.
  virtual void Add(const Tensor& a, const Tensor& acc) = 0;
  // t = 0; t [n, d] f32 (row-strided views allowed).
  virtual void Zero(const Tensor& t) = 0;
  // out[i] = x[idx[i]]. x [n, d] f32, idx [m] i32, out [m, d] f32.
  virtual void GatherRows(const Tensor& x, const Tensor& idx, const Tensor& out) = 0;
  // For i in order: out[idx[i]] += scale[i] * rows[i]. rows [m, d] f32, idx [m] i32,
  // scale [m] f32, out [n, d] f32. Sequential semantics: a fixed summation order.
  virtual void ScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                                const Tensor& out) = 0;

  // Causal depthwise conv1d + SiLU over each sequence of the batch, continuing from the stored
  // window of the previous K-1 inputs (zeros when n_past == 0), and storing the new window.
  // x [n, Di] f32 (pre-conv, may be a column view), w [Di, K] f32, bias [Di] f32 or nullptr,
  // state [slots, Di, K-1] f32 pool, out [n, Di] f32; out must not share memory with x (not
  // even as a disjoint column view of the same rows). The sequences of a layout use distinct
  // rows, Mamba slots and block tables (a device backend runs them concurrently).
  virtual void MambaConv(const BatchLayout& layout, const Tensor& x, const Tensor& w,
                         const Tensor* bias, const Tensor& state, const Tensor& out) = 0;
  // Selective scan + D skip + SiLU gate over each sequence, continuing from the stored state.
  virtual void MambaScan(const BatchLayout& layout, const MambaScanArgs& args) = 0;

  // Rotary embedding (half-split convention, as Llama/Mixtral) in place on x [n, heads * hd],
  // with each row's absolute position taken from the layout (n_past + row offset).
  virtual void Rope(const BatchLayout& layout, const Tensor& x, int64_t head_dim, double theta) = 0;
  // Writes the new k/v rows into the paged cache, then computes causal GQA attention.
  virtual void Attention(const BatchLayout& layout, const AttentionArgs& args) = 0;

  // Router: p = softmax(logits) over E in f32; ids/weights = top-k of p (descending; ties to the
  // lower expert id); if renormalize, weights /= sum of the k. logits [n, E] f32,
  // ids [n, k] i32, weights [n, k] f32.
  virtual void MoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
                        const Tensor& weights) = 0;
  // Token sampling on the device, so only token ids leave it: out[i] = the token that steps
  // 2-7 of the host sampler (kernels/cpu/row_sampler.h) draw from row i of x under params[i],
  // with params[i].uniform as the draw. Greedy rows (temperature 0) take the argmax, NaN
  // counting as -inf, ties to the lower index, 0 when every value is -inf or NaN. x [n, V] f32
  // (row-strided view allowed); params: n host values satisfying RowSamplingValid, read before
  // the call returns; out [n] i32. A device backend may differ from the CPU only where rounding
  // puts a cumulative sum within a few ulp of the top-p target or of the draw.
  virtual void SampleRows(const Tensor& x, absl::Span<const RowSampling> params,
                          const Tensor& out) = 0;
  // Groups the n * k (token, expert) pairs of a routing by expert, on the device: the slots of
  // expert 0 first, then expert 1, ..., each expert's in ascending token order (a stable
  // counting sort). ids [n, k] i32 in [0, E), weights [n, k] f32 (both contiguous) ->
  // token [n * k] i32 (the token of each grouped slot), scale [n * k] f32 (its weight),
  // counts [E] i32 (slots per expert). E = counts' size, at most kMaxMoeExperts.
  virtual void MoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token,
                        const Tensor& scale, const Tensor& counts) = 0;
};

// How the products with bf16 or int8 weights (MatMul, MatMulInt8, MatMulGrouped) take their
// f32 activations.
enum class MatMulPrecision {
  // As f32 arithmetic on the weights' values: x is used as it is (a GPU splits it exactly
  // into three bf16 terms for its bf16 tensor cores, three passes where the product is
  // compute-bound).
  kF32,
  // x rounded to bf16 (to nearest even) first, then the same f32 sums: one tensor-core pass
  // on a GPU, so compute-bound products (prefill) take about a third of kF32's time; what
  // PyTorch computes for a bf16 model. x keeps 8 significant bits instead of 24.
  kBf16,
};

struct BackendOptions {
  MatMulPrecision matmul_precision = MatMulPrecision::kF32;
  // CPU only. Every matrix product uses one fixed summation order per output, whatever the
  // batch, so a sequence's logits are bit-identical alone or in any batch (and across the
  // cluster's differently-batched workers). Off: OpenBLAS for prefill-sized products, faster
  // prefill, results that depend on the batch in the last bits (see bench/README figures).
  bool batch_invariant = true;
};

// The CPU reference backend; always available.
std::unique_ptr<Backend> CreateCpuBackend(const BackendOptions& options = {});

}  // namespace jamba

#endif  // JAMBA_KERNELS_BACKEND_H_
