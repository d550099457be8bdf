// CudaBackend: device memory, one stream, cuBLAS; ops are enqueued through the launchers of
// kernels/cuda/cuda_kernels.h (nvcc-compiled, abseil-free). This file is host-compiled.
#include "kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/cublas_matmul.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device_layout.h"
#include "kernels/cuda/device_memory.h"

namespace jamba {
namespace {

using cuda::CudaBuffer;
using cuda::CudaError;
using cuda::PinnedStaging;
using cuda::Scratch;
using cuda::StreamContext;

void CheckDevice(const Tensor& t) {
  JAMBA_CHECK_MSG(t.device == Device::kCuda, "CudaBackend: tensor is not on the CUDA device");
}

// The device pointer of an optional [n] f32 parameter vector (a norm weight, a bias), or
// nullptr when there is none; a vector of another shape or place is a programmer error.
const float* OptionalF32Vector(const Tensor* t, int64_t n) {
  if (t == nullptr) return nullptr;
  CheckDevice(*t);
  JAMBA_CHECK(t->dtype == DType::kF32 && t->numel() == n && t->contiguous());
  return t->ptr<float>();
}

class CudaBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(int device, MatMulPrecision precision) {
    std::unique_ptr<CudaBackend> b(new CudaBackend());
    b->precision_ = precision;
    absl::Status s = b->Init(device);
    if (!s.ok()) return s;
    return std::unique_ptr<Backend>(std::move(b));
  }

  ~CudaBackend() override {
    if (ctx_ == nullptr) return;
    cudaSetDevice(ctx_->device);
    if (ctx_->stream != nullptr) cudaStreamSynchronize(ctx_->stream);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    ctx_->Free(error_word_);
    for (const auto& [table, dev] : grouped_table_cache_) ctx_->Free(dev);
    if (error_host_ != nullptr) cudaFreeHost(error_host_);
  }

  Device device() const override { return Device::kCuda; }
  std::string name() const override { return absl::StrCat("cuda:", ctx_->device); }

  std::optional<DeviceMemoryInfo> MemoryInfo() const override {
    // cudaSetDevice is per thread: this does not disturb the thread driving the stream.
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(ctx_->device) != cudaSuccess ||
        cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();
      return std::nullopt;
    }
    return DeviceMemoryInfo{static_cast<int64_t>(total_bytes - free_bytes),
                            static_cast<int64_t>(total_bytes)};
  }

  // ---- Memory ---------------------------------------------------------------------------
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      DType dtype, std::initializer_list<int64_t> shape) override {
    JAMBA_ASSIGN_OR_RETURN(const size_t n, DenseBytes(dtype, shape));
    const size_t bytes = std::max<size_t>((n + 255) / 256 * 256, 256);
    Activate();
    void* p = nullptr;
    cudaError_t e = ctx_->Malloc(&p, bytes);
    if (e != cudaSuccess) {
      return absl::ResourceExhaustedError(
          absl::StrCat(name(), ": cannot allocate ", n, " bytes: ", cudaGetErrorString(e)));
    }
    auto buffer = std::make_unique<CudaBuffer>(ctx_, p, dtype, shape);
    e = cudaMemsetAsync(p, 0, bytes, ctx_->stream);
    if (e != cudaSuccess) return CudaError(e, "memset");
    return std::unique_ptr<DeviceBuffer>(std::move(buffer));
  }

  absl::Status Upload(const void* host, size_t bytes, const Tensor& dst) override {
    if (dst.device != Device::kCuda || !dst.contiguous() || dst.nbytes() != bytes) {
      return absl::InvalidArgumentError(
          "Upload: size mismatch, or destination not a contiguous CUDA tensor");
    }
    if (bytes == 0) return absl::OkStatus();
    Activate();
    return CopyToDevice(host, bytes, dst.data);
  }

  absl::Status Download(const Tensor& src, void* host) override {
    if (src.device != Device::kCuda || !src.contiguous()) {
      return absl::InvalidArgumentError("Download: source not a contiguous CUDA tensor");
    }
    Activate();
    if (src.nbytes() > 0) {
      cudaError_t e =
          cudaMemcpyAsync(host, src.data, src.nbytes(), cudaMemcpyDeviceToHost, ctx_->stream);
      if (e != cudaSuccess) Record(CudaError(e, "download"));
    }
    return Drain();
  }

  absl::Status Synchronize() override {
    Activate();
    return Drain();
  }

  // ---- Ops --------------------------------------------------------------------------------
  void Embed(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    Activate();
    RecordLaunch(cuda::LaunchEmbed(table, ids, out, error_word_, ctx_->stream), "Embed");
  }

  void RmsNorm(const Tensor& x, const Tensor* weight, float eps, const Tensor& out) override {
    const float* w = OptionalF32Vector(weight, x.dim(1));
    Activate();
    RecordLaunch(cuda::LaunchRmsNorm(x, w, eps, out, ctx_->stream), "RmsNorm");
  }

  void RmsNormGroups(const Tensor& x, absl::Span<const int64_t> widths,
                     absl::Span<const Tensor* const> weights, float eps) override {
    static_assert(cuda::NormGroups::kMaxGroups == kMaxNormGroups, "one limit on both sides");
    JAMBA_CHECK(!widths.empty() && static_cast<int64_t>(widths.size()) <= kMaxNormGroups &&
                weights.size() == widths.size());
    cuda::NormGroups groups;
    groups.count = static_cast<int>(widths.size());
    int64_t col = 0;
    for (int g = 0; g < groups.count; ++g) {
      groups.offset[g] = col;
      groups.width[g] = widths[g];
      groups.weight[g] = OptionalF32Vector(weights[g], widths[g]);
      col += widths[g];
    }
    Activate();
    RecordLaunch(cuda::LaunchRmsNormGroups(x, groups, eps, ctx_->stream), "RmsNormGroups");
  }

  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    const float* b = OptionalF32Vector(bias, w.dim(0));
    Activate();
    CublasProduct(x, w, b, y);
  }

  void MatMulInt8(const Tensor& x, const Tensor& w, const Tensor& scale, const Tensor* bias,
                  const Tensor& y) override {
    CheckDevice(scale);
    JAMBA_CHECK(w.dtype == DType::kI8 && w.ndim == 2 && scale.dtype == DType::kF32 &&
                scale.numel() == w.dim(0) && scale.contiguous());
    const float* b = OptionalF32Vector(bias, w.dim(0));
    const int64_t n = x.dim(0), m = w.dim(0), k = w.dim(1);
    JAMBA_CHECK(x.ndim == 2 && y.ndim == 2 && x.dim(1) == k && y.dim(0) == n && y.dim(1) == m);
    Activate();
    if (n <= cuda::kInt8GemvMaxRows || k == 0) {
      const Tensor xa = Activations(x);
      RecordLaunch(cuda::LaunchInt8Gemv(xa, w, scale.ptr<float>(), b, y, ctx_->stream),
                   "MatMulInt8");
      return;
    }
    // Prefill-sized: row chunks of the weights converted to bf16 (exact), multiplied by
    // cuBLAS into y's columns, then scaled. Chunks keep the bf16 copy under ~64 MiB; x is
    // split into its bf16 terms once, by the first chunk's product, for all of them.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m, (int64_t{64} << 20) / (2 * k)));
    absl::StatusOr<void*> wbuf = int8_weights_->Reserve(static_cast<size_t>(chunk * k * 2));
    if (!wbuf.ok()) {
      Record(wbuf.status());
      return;
    }
    uint16_t* wb = static_cast<uint16_t*>(*wbuf);
    // The first chunk is the largest: its scratch serves every chunk.
    const Tensor first = Tensor::Contiguous(wb, DType::kBF16, {chunk, k}, Device::kCuda);
    absl::StatusOr<void*> scratch =
        matmul_scratch_->Reserve(cuda::MatMulScratchBytes(x, first, precision_));
    if (!scratch.ok()) {
      Record(scratch.status());
      return;
    }
    for (int64_t r0 = 0; r0 < m; r0 += chunk) {
      const int64_t rows = std::min(chunk, m - r0);
      RecordLaunch(cuda::LaunchInt8ToBf16(w, r0, rows, wb, ctx_->stream), "MatMulInt8");
      const Tensor wt = Tensor::Contiguous(wb, DType::kBF16, {rows, k}, Device::kCuda);
      const Tensor yc = y.Cols(r0, rows);
      Record(cuda::CublasMatMul(cublas_, ctx_->stream, x, wt, nullptr, yc, *scratch, precision_,
                                /*x_split=*/r0 > 0));
      RecordLaunch(cuda::LaunchScaleColumns(yc, scale.ptr<float>() + r0,
                                            b != nullptr ? b + r0 : nullptr, ctx_->stream),
                   "MatMulInt8");
    }
  }

  void MatMulGrouped(const Tensor& x, absl::Span<const Tensor> w, absl::Span<const Tensor> scale,
                     const Tensor& counts, const Tensor& y) override {
    const int64_t e_count = static_cast<int64_t>(w.size());
    JAMBA_CHECK(e_count >= 1 && e_count <= cuda::kMaxGroupExperts);
    CheckDevice(counts);
    JAMBA_CHECK(counts.dtype == DType::kI32 && counts.contiguous() && counts.numel() == e_count);
    JAMBA_CHECK(scale.empty() || static_cast<int64_t>(scale.size()) == e_count);
    // Every held expert's matrix: one dtype, shape and row stride.
    const Tensor* first = nullptr;
    for (const Tensor& t : w) {
      if (t.data != nullptr) {
        first = &t;
        break;
      }
    }
    if (first == nullptr) return;  // no expert held here: y untouched
    const int64_t m = first->dim(0), k = first->dim(1), ldw = first->stride[0];
    const DType dtype = first->dtype;
    const int64_t vec = cuda::GroupedVectorElements(dtype);
    bool vectorized = k % vec == 0 && ldw % vec == 0;
    std::vector<const void*> table(2 * e_count, nullptr);  // [weights | scales]
    for (int64_t e = 0; e < e_count; ++e) {
      const Tensor& t = w[e];
      if (t.data == nullptr) continue;
      CheckDevice(t);
      JAMBA_CHECK(t.dtype == dtype && t.ndim == 2 && t.dim(0) == m && t.dim(1) == k &&
                  t.stride[0] == ldw && t.stride[1] == 1);
      vectorized = vectorized && reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
      table[e] = t.data;
      if (dtype == DType::kI8) {
        JAMBA_CHECK(!scale.empty());
        table[e_count + e] = OptionalF32Vector(&scale[e], m);
      }
    }
    JAMBA_CHECK(x.ndim == 2 && y.ndim == 2 && x.dim(1) == k && y.dim(1) == m &&
                y.dim(0) == x.dim(0) && x.stride[1] == 1);
    Activate();
    absl::StatusOr<void*> dev = GroupedTable(table);
    if (!dev.ok()) {
      Record(dev.status());
      return;
    }
    const void* const* dev_table = static_cast<const void* const*>(*dev);
    const Tensor xa = dtype == DType::kF32 ? x : Activations(x);
    cuda::GroupedProduct p;
    p.x = &xa;
    p.y = &y;
    p.m = m;
    p.k = k;
    p.ldw = ldw;
    p.weight_dtype = dtype;
    p.vectorized = vectorized;
    p.x_vectorized =
        vectorized && xa.stride[0] % 4 == 0 && reinterpret_cast<uintptr_t>(xa.data) % 16 == 0;
    p.experts = static_cast<int32_t>(e_count);
    p.weights = dev_table;
    p.scales =
        dtype == DType::kI8 ? reinterpret_cast<const float* const*>(dev_table + e_count) : nullptr;
    p.counts = counts.ptr<int32_t>();
    p.error_word = error_word_;
    RecordLaunch(cuda::LaunchGroupedGemv(p, ctx_->stream), "MatMulGrouped");
  }

  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    Activate();
    RecordLaunch(cuda::LaunchSiluMul(gate, up, out, ctx_->stream), "SiluMul");
  }

  void Add(const Tensor& a, const Tensor& acc) override {
    Activate();
    RecordLaunch(cuda::LaunchAdd(a, acc, ctx_->stream), "Add");
  }

  void Zero(const Tensor& t) override {
    Activate();
    RecordLaunch(cuda::LaunchZero(t, ctx_->stream), "Zero");
  }

  void GatherRows(const Tensor& x, const Tensor& idx, const Tensor& out) override {
    Activate();
    RecordLaunch(cuda::LaunchGatherRows(x, idx, out, error_word_, ctx_->stream), "GatherRows");
  }

  void ScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                        const Tensor& out) override {
    Activate();
    RecordLaunch(cuda::LaunchScatterAddScaled(rows, idx, scale, out, error_word_, ctx_->stream),
                 "ScatterAddScaled");
  }

  void MambaConv(const BatchLayout& layout, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const Tensor& state, const Tensor& out) override {
    const float* b = OptionalF32Vector(bias, w.dim(0));
    Activate();
    absl::StatusOr<cuda::DeviceLayout> dl =
        layouts_->Get(layout, {x.dim(0), state.dim(0), /*kv_blocks=*/-1});
    if (!dl.ok()) {
      Record(dl.status());
      return;
    }
    RecordLaunch(cuda::LaunchMambaConv(*dl, x, w, b, state, out, ctx_->stream), "MambaConv");
  }

  void MambaScan(const BatchLayout& layout, const MambaScanArgs& a) override {
    Activate();
    absl::StatusOr<cuda::DeviceLayout> dl =
        layouts_->Get(layout, {a.x.dim(0), a.state.dim(0), /*kv_blocks=*/-1});
    if (!dl.ok()) {
      Record(dl.status());
      return;
    }
    RecordLaunch(
        cuda::LaunchMambaScan(*dl, a.x, a.dt, a.A, a.B, a.C, a.D, a.z, a.state, a.y, ctx_->stream),
        "MambaScan");
  }

  void Rope(const BatchLayout& layout, const Tensor& x, int64_t head_dim, double theta) override {
    CheckDevice(x);
    JAMBA_CHECK(x.ndim == 2 && head_dim > 0 && head_dim % 2 == 0 && x.dim(1) % head_dim == 0);
    const int64_t rows = x.dim(0);
    if (rows == 0) return;
    Activate();
    // Per-row absolute positions (-1: row not in the layout), uploaded without waiting.
    positions_host_.assign(rows, -1);
    for (const SeqSlice& s : layout.seqs) {
      JAMBA_CHECK(s.token_begin >= 0 && s.token_begin + s.n_tokens <= rows);
      for (int32_t t = 0; t < s.n_tokens; ++t) positions_host_[s.token_begin + t] = s.n_past + t;
    }
    const size_t pos_bytes = rows * sizeof(int32_t);
    absl::StatusOr<void*> positions =
        UploadToScratch(*positions_, positions_host_.data(), pos_bytes);
    if (!positions.ok()) {
      Record(positions.status());
      return;
    }
    // Inverse frequencies, computed on the host with the CPU kernel's f32 arithmetic; cached
    // while head_dim and theta stay the same.
    if (head_dim != inv_freq_head_dim_ || theta != inv_freq_theta_) {
      const int64_t half = head_dim / 2;
      std::vector<float> inv_freq(half);
      for (int64_t i = 0; i < half; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
      }
      absl::StatusOr<void*> dev =
          UploadToScratch(*inv_freq_, inv_freq.data(), half * sizeof(float));
      if (!dev.ok()) {
        Record(dev.status());
        return;
      }
      inv_freq_dev_ = static_cast<float*>(*dev);
      inv_freq_head_dim_ = head_dim;
      inv_freq_theta_ = theta;
    }
    RecordLaunch(cuda::LaunchRope(x, static_cast<const int32_t*>(*positions), inv_freq_dev_,
                                  head_dim, ctx_->stream),
                 "Rope");
  }

  void Attention(const BatchLayout& layout, const AttentionArgs& a) override {
    Activate();
    absl::StatusOr<cuda::DeviceLayout> dl =
        layouts_->Get(layout, {a.q.dim(0), /*mamba_slots=*/-1, a.k_cache.dim(0)});
    if (!dl.ok()) {
      Record(dl.status());
      return;
    }
    cuda::AttentionParams p;
    p.q = a.q;
    p.k = a.k;
    p.v = a.v;
    p.k_cache = a.k_cache;
    p.v_cache = a.v_cache;
    p.out = a.out;
    p.num_heads = static_cast<int32_t>(a.num_heads);
    p.num_kv_heads = static_cast<int32_t>(a.num_kv_heads);
    p.head_dim = static_cast<int32_t>(a.head_dim);
    p.scale = a.scale;
    p.tiled_min_rows =
        cuda::TiledAttentionSharedBytes(p.head_dim) <= static_cast<size_t>(max_shared_per_block_)
            ? cuda::kTiledAttentionMinRows
            : INT32_MAX;
    const int32_t chunks = cuda::AttentionChunks(*dl, p.num_kv_heads, sm_count_, p.tiled_min_rows);
    float* partials = nullptr;
    if (const int64_t floats = cuda::AttentionPartialFloats(*dl, p, chunks); floats > 0) {
      absl::StatusOr<void*> mem = attention_partials_->Reserve(floats * sizeof(float));
      if (!mem.ok()) {
        Record(mem.status());
        return;
      }
      partials = static_cast<float*>(*mem);
    }
    RecordLaunch(
        cuda::LaunchAttention(*dl, p, chunks, partials, max_shared_per_block_, ctx_->stream),
        "Attention");
  }

  void SampleRows(const Tensor& x, absl::Span<const RowSampling> params,
                  const Tensor& out) override {
    JAMBA_CHECK(static_cast<int64_t>(params.size()) == x.dim(0));
    for (const RowSampling& p : params) JAMBA_CHECK(RowSamplingValid(p));
    if (params.empty()) return;
    Activate();
    absl::StatusOr<void*> dev =
        UploadToScratch(*sample_params_, params.data(), params.size() * sizeof(RowSampling));
    if (!dev.ok()) {
      Record(dev.status());
      return;
    }
    RecordLaunch(
        cuda::LaunchSampleRows(x, static_cast<const RowSampling*>(*dev), out, ctx_->stream),
        "SampleRows");
  }

  void MoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token, const Tensor& scale,
                const Tensor& counts) override {
    static_assert(cuda::kMaxGroupExperts == kMaxMoeExperts, "one limit on both sides");
    Activate();
    RecordLaunch(
        cuda::LaunchMoeGroup(ids, weights, token, scale, counts, error_word_, ctx_->stream),
        "MoeGroup");
  }

  void MoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
                const Tensor& weights) override {
    Activate();
    RecordLaunch(cuda::LaunchMoeRoute(logits, k, renormalize, ids, weights, ctx_->stream),
                 "MoeRoute");
  }

 private:
  CudaBackend() = default;

  absl::Status Init(int device) {
    absl::StatusOr<int> count = CudaDeviceCount();
    if (!count.ok()) return count.status();
    if (device < 0 || device >= *count) {
      return absl::InvalidArgumentError(
          absl::StrCat("CUDA device ", device, " does not exist (", *count, " present)"));
    }
    ctx_ = std::make_shared<StreamContext>();
    ctx_->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return CudaError(e, "set device");
    int pools = 0;
    e = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
    if (e != cudaSuccess) return CudaError(e, "device attribute");
    ctx_->pooled = pools != 0;
    if (ctx_->pooled) {
      // Keep freed blocks in the pool instead of returning them to the driver at every
      // synchronisation: scratch and activations are reallocated all the time.
      cudaMemPool_t pool;
      e = cudaDeviceGetDefaultMemPool(&pool, device);
      if (e != cudaSuccess) return CudaError(e, "memory pool");
      uint64_t threshold = UINT64_MAX;
      e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
      if (e != cudaSuccess) return CudaError(e, "memory pool attribute");
    }
    e = cudaStreamCreateWithFlags(&ctx_->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      ctx_->stream = nullptr;
      return CudaError(e, "stream creation");
    }
    cublasStatus_t cs = cublasCreate(&cublas_);
    if (cs != CUBLAS_STATUS_SUCCESS) {
      cublas_ = nullptr;
      return absl::InternalError(absl::StrCat("cublasCreate: ", cublasGetStatusString(cs)));
    }
    cs = cublasSetStream(cublas_, ctx_->stream);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH);
    if (cs != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError(absl::StrCat("cuBLAS setup: ", cublasGetStatusString(cs)));
    }
    void* word = nullptr;
    e = ctx_->Malloc(&word, sizeof(int));
    if (e != cudaSuccess) return CudaError(e, "error word allocation");
    error_word_ = static_cast<int*>(word);
    e = cudaMemsetAsync(error_word_, 0, sizeof(int), ctx_->stream);
    if (e != cudaSuccess) return CudaError(e, "memset");
    void* host_word = nullptr;
    e = cudaMallocHost(&host_word, sizeof(int));
    if (e != cudaSuccess) return CudaError(e, "pinned allocation");
    error_host_ = static_cast<int*>(host_word);
    *error_host_ = 0;
    if (absl::Status s = staging_.Init(); !s.ok()) return s;
    matmul_scratch_ = std::make_unique<Scratch>(ctx_);
    rounded_x_ = std::make_unique<Scratch>(ctx_);
    positions_ = std::make_unique<Scratch>(ctx_);
    inv_freq_ = std::make_unique<Scratch>(ctx_);
    attention_partials_ = std::make_unique<Scratch>(ctx_);
    int8_weights_ = std::make_unique<Scratch>(ctx_);
    sample_params_ = std::make_unique<Scratch>(ctx_);
    grouped_tables_ = std::make_unique<Scratch>(ctx_);
    layouts_ = std::make_unique<cuda::LayoutCache>(
        ctx_, [this](const void* host, size_t bytes, void* dst) {
          return CopyToDevice(host, bytes, dst);
        });
    e = cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device);
    if (e != cudaSuccess) return CudaError(e, "device attribute");
    e = cudaDeviceGetAttribute(&max_shared_per_block_, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                               device);
    if (e != cudaSuccess) return CudaError(e, "device attribute");
    e = cudaStreamSynchronize(ctx_->stream);
    if (e != cudaSuccess) return CudaError(e, "initial synchronisation");
    return absl::OkStatus();
  }

  // Makes this backend's device current for the calling thread (several backends, on
  // different devices, may be driven by one thread in turn).
  void Activate() {
    cudaError_t e = cudaSetDevice(ctx_->device);
    if (e != cudaSuccess) Record(CudaError(e, "set device"));
  }

  // The device copy of a MatMulGrouped pointer table. The tables of a model's layers never
  // change, so each is uploaded once and kept (a few KiB each, at most kMaxCachedTables);
  // past that, a per-call copy in stream order.
  absl::StatusOr<void*> GroupedTable(const std::vector<const void*>& table) {
    static constexpr size_t kMaxCachedTables = 4096;
    const size_t bytes = table.size() * sizeof(void*);
    if (auto it = grouped_table_cache_.find(table); it != grouped_table_cache_.end()) {
      return it->second;
    }
    if (grouped_table_cache_.size() >= kMaxCachedTables) {
      return UploadToScratch(*grouped_tables_, table.data(), bytes);
    }
    void* dev = nullptr;
    cudaError_t e = ctx_->Malloc(&dev, bytes);
    if (e != cudaSuccess) return CudaError(e, "MatMulGrouped table");
    grouped_table_cache_.emplace(table, dev);
    JAMBA_RETURN_IF_ERROR(CopyToDevice(table.data(), bytes, dev));
    return dev;
  }

  // Host bytes copied into `scratch` (grown as needed) in stream order, for a kernel's small
  // per-call inputs; the host memory is free on return.
  absl::StatusOr<void*> UploadToScratch(Scratch& scratch, const void* host, size_t bytes) {
    JAMBA_ASSIGN_OR_RETURN(void* dev, scratch.Reserve(bytes));
    JAMBA_RETURN_IF_ERROR(CopyToDevice(host, bytes, dev));
    return dev;
  }

  // y = x w^T (+ bias) through cuBLAS, with the scratch the product needs.
  void CublasProduct(const Tensor& x, const Tensor& w, const float* bias, const Tensor& y) {
    void* scratch = nullptr;
    if (const size_t bytes = cuda::MatMulScratchBytes(x, w, precision_); bytes > 0) {
      absl::StatusOr<void*> s = matmul_scratch_->Reserve(bytes);
      if (!s.ok()) {
        Record(s.status());
        return;
      }
      scratch = *s;
    }
    Record(cuda::CublasMatMul(cublas_, ctx_->stream, x, w, bias, y, scratch, precision_));
  }

  // x as a GEMV kernel with bf16 or int8 weights takes it: itself, or (MatMulPrecision::kBf16)
  // a copy rounded to bf16 in scratch, valid in stream order until the next call. (cuBLAS
  // products round through their bf16 split instead.)
  Tensor Activations(const Tensor& x) {
    if (precision_ == MatMulPrecision::kF32) return x;
    JAMBA_CHECK(x.ndim == 2);
    const int64_t n = x.dim(0), k = x.dim(1);
    absl::StatusOr<void*> buf = rounded_x_->Reserve(static_cast<size_t>(n * k) * sizeof(float));
    if (!buf.ok()) {
      Record(buf.status());
      return x;
    }
    const Tensor r = Tensor::Contiguous(*buf, DType::kF32, {n, k}, Device::kCuda);
    RecordLaunch(cuda::LaunchRoundToBf16(x, r, ctx_->stream), "bf16 rounding");
    return r;
  }

  // Keeps the first error until Drain() reports it.
  void Record(absl::Status s) {
    if (!s.ok() && pending_.ok()) pending_ = std::move(s);
  }
  void RecordLaunch(cudaError_t e, const char* op) {
    if (e != cudaSuccess) Record(CudaError(e, op));
  }

  // Host -> device copy that returns once `host` may be reused.
  absl::Status CopyToDevice(const void* host, size_t bytes, void* dst) {
    if (bytes <= PinnedStaging::kSlotBytes) {
      return staging_.Upload(host, bytes, dst, ctx_->stream);
    }
    cudaError_t e = cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, ctx_->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx_->stream);
    return e == cudaSuccess ? absl::OkStatus() : CudaError(e, "upload");
  }

  // Waits for the stream, then reports (and forgets) the first recorded error, the first
  // execution error, or the first index error seen by a kernel.
  absl::Status Drain() {
    cudaError_t e = cudaMemcpyAsync(error_host_, error_word_, sizeof(int), cudaMemcpyDeviceToHost,
                                    ctx_->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx_->stream);
    if (e != cudaSuccess) Record(CudaError(e, "stream synchronisation"));
    if (e == cudaSuccess && *error_host_ != cuda::kKernelOk) {
      Record(absl::InternalError(
          absl::StrCat(name(), ": kernel reported ", cuda::KernelErrorName(*error_host_))));
      *error_host_ = cuda::kKernelOk;
      cudaMemsetAsync(error_word_, 0, sizeof(int), ctx_->stream);
    }
    absl::Status s = std::move(pending_);
    pending_ = absl::OkStatus();
    return s;
  }

  std::shared_ptr<StreamContext> ctx_;
  cublasHandle_t cublas_ = nullptr;
  int* error_word_ = nullptr;  // device int: first KernelError seen since the last Drain()
  int* error_host_ = nullptr;  // pinned copy target of error_word_
  PinnedStaging staging_;
  MatMulPrecision precision_ = MatMulPrecision::kF32;
  std::unique_ptr<Scratch> matmul_scratch_;
  std::unique_ptr<Scratch> rounded_x_;           // Activations' copy
  std::unique_ptr<Scratch> positions_;           // [rows] i32 of the last Rope
  std::unique_ptr<Scratch> inv_freq_;            // [head_dim / 2] f32
  std::unique_ptr<Scratch> attention_partials_;  // per-chunk results of split attention
  std::unique_ptr<Scratch> int8_weights_;        // bf16 copy of an int8 weight chunk
  std::unique_ptr<Scratch> sample_params_;       // [rows] RowSampling of the last SampleRows
  std::unique_ptr<Scratch> grouped_tables_;      // MatMulGrouped tables past the cache
  // MatMulGrouped's [weights | scales] pointer tables -> their device copies.
  absl::flat_hash_map<std::vector<const void*>, void*> grouped_table_cache_;
  std::unique_ptr<cuda::LayoutCache> layouts_;  // the device copy of the current BatchLayout
  int sm_count_ = 1;
  int max_shared_per_block_ = 48 * 1024;  // dynamic shared memory a block may opt into
  float* inv_freq_dev_ = nullptr;
  int64_t inv_freq_head_dim_ = 0;
  double inv_freq_theta_ = 0.0;
  std::vector<int32_t> positions_host_;
  absl::Status pending_;
};

}  // namespace

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear, so later runtime calls do not report it again
    return absl::UnavailableError(absl::StrCat("no usable CUDA device: ", cudaGetErrorName(e), " (",
                                               cudaGetErrorString(e), ")"));
  }
  if (count <= 0) return absl::UnavailableError("no CUDA device present");
  return count;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device, MatMulPrecision precision) {
  return CudaBackend::Create(device, precision);
}

}  // namespace jamba
