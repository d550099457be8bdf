// Mamba mixer kernels on the CPU: the causal depthwise conv with a carried window, and the
// selective scan with a carried state. Both parallelise over channels (Di), which are
// independent, and walk each sequence's tokens in order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace jamba::cpu {
namespace {

inline float Silu(float v) { return v / (1.0f + std::exp(-v)); }
// PyTorch's softplus with threshold 20: returns x above it (pitfall 21).
inline float Softplus(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }

}  // namespace

void MambaConv(const BatchLayout& layout, const Tensor& x, const Tensor& w, const Tensor* bias,
               const Tensor& state, const Tensor& out) {
  const int64_t di = w.dim(0), kw = w.dim(1), hist = kw - 1;
  JAMBA_CHECK(x.dim(1) == di && out.dim(1) == di && w.dtype == DType::kF32);
  JAMBA_CHECK(state.ndim == 3 && state.dim(1) == di && state.dim(2) == hist);
  JAMBA_CHECK(bias == nullptr || bias->numel() == di);
  const float* wp = w.ptr<float>();
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  const int64_t ldx = x.ld(), ldo = out.ld();
  for (const SeqSlice& s : layout.seqs) {
    JAMBA_CHECK(s.mamba_slot >= 0 && s.mamba_slot < state.dim(0));
    float* st = state.ptr<float>() + s.mamba_slot * state.stride[0];
    const float* xs = x.ptr<float>() + static_cast<int64_t>(s.token_begin) * ldx;
    float* os = out.ptr<float>() + static_cast<int64_t>(s.token_begin) * ldo;
    const int64_t n = s.n_tokens;
#pragma omp parallel for schedule(static) if (n * di > 32768)
    for (int64_t d = 0; d < di; ++d) {
      // window = [previous K-1 inputs | this chunk's inputs] for channel d.
      float window[64];
      std::vector<float> big;
      float* win = window;
      if (hist + n > 64) {
        big.resize(hist + n);
        win = big.data();
      }
      float* sd = st + d * hist;
      for (int64_t j = 0; j < hist; ++j) win[j] = s.n_past > 0 ? sd[j] : 0.0f;
      for (int64_t t = 0; t < n; ++t) win[hist + t] = xs[t * ldx + d];
      const float* wd = wp + d * kw;
      const float b = bp ? bp[d] : 0.0f;
      for (int64_t t = 0; t < n; ++t) {
        // Cross-correlation: tap K-1 multiplies the current token (pitfall 3).
        float acc = b;
        for (int64_t j = 0; j < kw; ++j) acc += wd[j] * win[t + j];
        os[t * ldo + d] = Silu(acc);
      }
      for (int64_t j = 0; j < hist; ++j) sd[j] = win[n + j];
    }
  }
}

void MambaScan(const BatchLayout& layout, const MambaScanArgs& a) {
  const int64_t di = a.A.dim(0), ns = a.A.dim(1);
  JAMBA_CHECK(a.x.dim(1) == di && a.dt.dim(1) == di && a.z.dim(1) == di && a.y.dim(1) == di);
  JAMBA_CHECK(a.B.dim(1) == ns && a.C.dim(1) == ns && a.D.numel() == di);
  JAMBA_CHECK(a.state.ndim == 3 && a.state.dim(1) == di && a.state.dim(2) == ns);
  JAMBA_CHECK(ns <= 256);
  const float* A = a.A.ptr<float>();
  const float* D = a.D.ptr<float>();
  for (const SeqSlice& s : layout.seqs) {
    JAMBA_CHECK(s.mamba_slot >= 0 && s.mamba_slot < a.state.dim(0));
    float* st = a.state.ptr<float>() + s.mamba_slot * a.state.stride[0];
    const int64_t n = s.n_tokens, t0 = s.token_begin;
#pragma omp parallel for schedule(static) if (n * di * ns > 65536)
    for (int64_t d = 0; d < di; ++d) {
      float h[256];
      float* sd = st + d * ns;
      for (int64_t k = 0; k < ns; ++k) h[k] = s.n_past > 0 ? sd[k] : 0.0f;
      const float* Ad = A + d * ns;
      for (int64_t t = t0; t < t0 + n; ++t) {
        const float xv = a.x.ptr<float>()[t * a.x.ld() + d];
        const float dt = Softplus(a.dt.ptr<float>()[t * a.dt.ld() + d]);
        const float* Bt = a.B.ptr<float>() + t * a.B.ld();
        const float* Ct = a.C.ptr<float>() + t * a.C.ld();
        const float dtx = dt * xv;
        float yv = 0.0f;
        for (int64_t k = 0; k < ns; ++k) {
          h[k] = std::exp(dt * Ad[k]) * h[k] + dtx * Bt[k];
          yv += h[k] * Ct[k];
        }
        yv += D[d] * xv;
        const float zv = a.z.ptr<float>()[t * a.z.ld() + d];
        a.y.ptr<float>()[t * a.y.ld() + d] = yv * Silu(zv);
      }
      for (int64_t k = 0; k < ns; ++k) sd[k] = h[k];
    }
  }
}

}  // namespace jamba::cpu
