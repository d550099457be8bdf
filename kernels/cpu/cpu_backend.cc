// CpuBackend: host memory, ops run synchronously (multi-threaded with OpenMP inside).
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"

namespace jamba {
namespace {

class CpuBuffer : public DeviceBuffer {
 public:
  CpuBuffer(void* data, DType dtype, std::initializer_list<int64_t> shape) : data_(data) {
    tensor_ = Tensor::Contiguous(data, dtype, shape, Device::kCpu);
  }
  ~CpuBuffer() override { std::free(data_); }

 private:
  void* data_;
};

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options) : options_(options) {}

  Device device() const override { return Device::kCpu; }
  std::string name() const override { return "cpu"; }

  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(
      DType dtype, std::initializer_list<int64_t> shape) override {
    JAMBA_ASSIGN_OR_RETURN(const size_t n, DenseBytes(dtype, shape));
    // 64-byte alignment: whole cache lines, and aligned vector loads where kernels want them.
    size_t bytes = (n + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    void* p = std::aligned_alloc(64, bytes);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot allocate ", n, " bytes"));
    }
    std::memset(p, 0, bytes);
    return std::unique_ptr<DeviceBuffer>(new CpuBuffer(p, dtype, shape));
  }

  absl::Status Upload(const void* host, size_t bytes, const Tensor& dst) override {
    if (!dst.contiguous() || dst.nbytes() != bytes) {
      return absl::InvalidArgumentError("Upload: size mismatch or non-contiguous destination");
    }
    std::memcpy(dst.data, host, bytes);
    return absl::OkStatus();
  }
  absl::Status Download(const Tensor& src, void* host) override {
    if (!src.contiguous()) return absl::InvalidArgumentError("Download: non-contiguous source");
    std::memcpy(host, src.data, src.nbytes());
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  void Embed(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    cpu::Embed(table, ids, out);
  }
  void RmsNorm(const Tensor& x, const Tensor* weight, float eps, const Tensor& out) override {
    cpu::RmsNorm(x, weight, eps, out);
  }
  void MatMulInt8(const Tensor& x, const Tensor& w, const Tensor& scale, const Tensor* bias,
                  const Tensor& y) override {
    cpu::MatMulInt8(Activations(x), w, scale, bias, y);
  }
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    cpu::MatMul(w.dtype == DType::kBF16 ? Activations(x) : x, w, bias, y, options_.batch_invariant);
  }
  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    cpu::SiluMul(gate, up, out);
  }
  void Add(const Tensor& a, const Tensor& acc) override { cpu::Add(a, acc); }
  void Zero(const Tensor& t) override { cpu::Zero(t); }
  void GatherRows(const Tensor& x, const Tensor& idx, const Tensor& out) override {
    cpu::GatherRows(x, idx, out);
  }
  void ScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                        const Tensor& out) override {
    cpu::ScatterAddScaled(rows, idx, scale, out);
  }
  void MambaConv(const BatchLayout& layout, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const Tensor& state, const Tensor& out) override {
    cpu::MambaConv(layout, x, w, bias, state, out);
  }
  void MambaScan(const BatchLayout& layout, const MambaScanArgs& args) override {
    cpu::MambaScan(layout, args);
  }
  void Rope(const BatchLayout& layout, const Tensor& x, int64_t head_dim, double theta) override {
    cpu::Rope(layout, x, head_dim, theta);
  }
  void Attention(const BatchLayout& layout, const AttentionArgs& args) override {
    cpu::Attention(layout, args);
  }
  void RmsNormGroups(const Tensor& x, absl::Span<const int64_t> widths,
                     absl::Span<const Tensor* const> weights, float eps) override {
    JAMBA_CHECK(!widths.empty() && static_cast<int64_t>(widths.size()) <= kMaxNormGroups &&
                weights.size() == widths.size());
    int64_t col = 0;
    for (size_t g = 0; g < widths.size(); ++g) {
      JAMBA_CHECK(widths[g] >= 1);
      const Tensor group = x.Cols(col, widths[g]);
      cpu::RmsNorm(group, weights[g], eps, group);
      col += widths[g];
    }
    JAMBA_CHECK(col == x.dim(1));
  }
  void MatMulGrouped(const Tensor& x, absl::Span<const Tensor> w, absl::Span<const Tensor> scale,
                     const Tensor& counts, const Tensor& y) override {
    JAMBA_CHECK(counts.dtype == DType::kI32 && counts.contiguous() &&
                counts.numel() == static_cast<int64_t>(w.size()));
    JAMBA_CHECK(scale.empty() || scale.size() == w.size());
    // The same products as one MatMul per expert, so a batch computes the same bits grouped
    // or not.
    int64_t offset = 0;
    for (size_t e = 0; e < w.size(); ++e) {
      const int64_t n = counts.ptr<int32_t>()[e];
      JAMBA_CHECK(n >= 0 && offset + n <= x.dim(0));
      if (n > 0 && w[e].data != nullptr) {
        const Tensor xe = x.Rows(offset, n), ye = y.Rows(offset, n);
        if (w[e].dtype == DType::kI8) {
          JAMBA_CHECK(!scale.empty());
          MatMulInt8(xe, w[e], scale[e], nullptr, ye);
        } else {
          MatMul(xe, w[e], nullptr, ye);
        }
      }
      offset += n;
    }
  }
  void SampleRows(const Tensor& x, absl::Span<const RowSampling> params,
                  const Tensor& out) override {
    cpu::SampleRows(x, params, out);
  }
  void MoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token, const Tensor& scale,
                const Tensor& counts) override {
    cpu::MoeGroup(ids, weights, token, scale, counts);
  }
  void MoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
                const Tensor& weights) override {
    cpu::MoeRoute(logits, k, renormalize, ids, weights);
  }

 private:
  // x as a product with bf16 or int8 weights takes it: itself, or (MatMulPrecision::kBf16)
  // a copy rounded to bf16, valid until the next call.
  Tensor Activations(const Tensor& x) {
    if (options_.matmul_precision == MatMulPrecision::kF32) return x;
    JAMBA_CHECK(x.dtype == DType::kF32 && x.ndim == 2 && x.stride[1] == 1);
    const int64_t n = x.dim(0), k = x.dim(1);
    rounded_.resize(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x.ptr<float>() + i * x.stride[0];
      float* ri = rounded_.data() + i * k;
      for (int64_t j = 0; j < k; ++j) ri[j] = Bf16ToF32(F32ToBf16(xi[j]));
    }
    return Tensor::Contiguous(rounded_.data(), DType::kF32, {n, k}, Device::kCpu);
  }

  std::vector<float> rounded_;  // Activations' copy
  BackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace jamba
