// Row-wise and elementwise CPU kernels: embedding, RMSNorm, SiLU gating, residual add,
// gather/scatter for MoE, router top-k, rotary embedding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace jamba::cpu {
namespace {

inline float Silu(float v) { return v / (1.0f + std::exp(-v)); }

inline const float* RowF32(const Tensor& t, int64_t i) { return t.ptr<float>() + i * t.ld(); }
inline float* MutRowF32(const Tensor& t, int64_t i) { return t.ptr<float>() + i * t.ld(); }

}  // namespace

void Embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  JAMBA_CHECK(ids.dtype == DType::kI32 && out.dtype == DType::kF32);
  const int64_t n = ids.dim(0), h = table.dim(1);
  JAMBA_CHECK(out.dim(0) == n && out.dim(1) == h);
  const int32_t* id = ids.ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    JAMBA_CHECK(id[i] >= 0 && id[i] < table.dim(0));
    float* dst = MutRowF32(out, i);
    if (table.dtype == DType::kF32) {
      std::memcpy(dst, table.ptr<float>() + id[i] * table.ld(), h * sizeof(float));
    } else {
      JAMBA_CHECK(table.dtype == DType::kBF16);
      const uint16_t* src = table.ptr<uint16_t>() + id[i] * table.ld();
      for (int64_t j = 0; j < h; ++j) dst[j] = Bf16ToF32(src[j]);
    }
  }
}

void RmsNorm(const Tensor& x, const Tensor* weight, float eps, const Tensor& out) {
  JAMBA_CHECK(x.dtype == DType::kF32 && out.dtype == DType::kF32);
  const int64_t n = x.dim(0), d = x.dim(1);
  JAMBA_CHECK(out.dim(0) == n && out.dim(1) == d);
  const float* w = nullptr;
  if (weight != nullptr) {
    JAMBA_CHECK(weight->dtype == DType::kF32 && weight->numel() == d);
    w = weight->ptr<float>();
  }
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = RowF32(x, i);
    float* yi = MutRowF32(out, i);
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float r = 1.0f / std::sqrt(static_cast<float>(ss / d) + eps);
    if (w != nullptr) {
      for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * r * w[j];
    } else {
      for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * r;
    }
  }
}

void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  const int64_t n = gate.dim(0), d = gate.dim(1);
  JAMBA_CHECK(up.dim(0) == n && up.dim(1) == d && out.dim(0) == n && out.dim(1) == d);
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float* g = RowF32(gate, i);
    const float* u = RowF32(up, i);
    float* o = MutRowF32(out, i);
    for (int64_t j = 0; j < d; ++j) o[j] = Silu(g[j]) * u[j];
  }
}

void Add(const Tensor& a, const Tensor& acc) {
  const int64_t n = a.dim(0), d = a.dim(1);
  JAMBA_CHECK(acc.dim(0) == n && acc.dim(1) == d);
  for (int64_t i = 0; i < n; ++i) {
    const float* s = RowF32(a, i);
    float* o = MutRowF32(acc, i);
    for (int64_t j = 0; j < d; ++j) o[j] += s[j];
  }
}

void Zero(const Tensor& t) {
  const int64_t n = t.dim(0), d = t.dim(1);
  for (int64_t i = 0; i < n; ++i) std::memset(MutRowF32(t, i), 0, d * sizeof(float));
}

void GatherRows(const Tensor& x, const Tensor& idx, const Tensor& out) {
  JAMBA_CHECK(idx.dtype == DType::kI32);
  const int64_t m = idx.dim(0), d = x.dim(1);
  JAMBA_CHECK(out.dim(0) == m && out.dim(1) == d);
  const int32_t* id = idx.ptr<int32_t>();
  for (int64_t i = 0; i < m; ++i) {
    JAMBA_CHECK(id[i] >= 0 && id[i] < x.dim(0));
    std::memcpy(MutRowF32(out, i), RowF32(x, id[i]), d * sizeof(float));
  }
}

void ScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                      const Tensor& out) {
  JAMBA_CHECK(idx.dtype == DType::kI32 && scale.dtype == DType::kF32);
  const int64_t m = rows.dim(0), d = rows.dim(1);
  JAMBA_CHECK(idx.dim(0) == m && scale.dim(0) == m && out.dim(1) == d);
  const int32_t* id = idx.ptr<int32_t>();
  const float* sc = scale.ptr<float>();
  for (int64_t i = 0; i < m; ++i) {
    JAMBA_CHECK(id[i] >= 0 && id[i] < out.dim(0));
    const float* r = RowF32(rows, i);
    float* o = MutRowF32(out, id[i]);
    const float s = sc[i];
    for (int64_t j = 0; j < d; ++j) o[j] += s * r[j];
  }
}

void MoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
              const Tensor& weights) {
  const int64_t n = logits.dim(0), e = logits.dim(1);
  JAMBA_CHECK(k >= 1 && k <= e && ids.dim(0) == n && ids.dim(1) == k);
  JAMBA_CHECK(weights.dim(0) == n && weights.dim(1) == k);
  std::vector<float> p(e);
  std::vector<int32_t> order(e);
  for (int64_t i = 0; i < n; ++i) {
    const float* l = RowF32(logits, i);
    float mx = l[0];
    for (int64_t j = 1; j < e; ++j) mx = std::max(mx, l[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < e; ++j) {
      p[j] = std::exp(l[j] - mx);
      sum += p[j];
    }
    for (int64_t j = 0; j < e; ++j) p[j] /= sum;
    for (int64_t j = 0; j < e; ++j) order[j] = static_cast<int32_t>(j);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float total = 0.0f;
    for (int j = 0; j < k; ++j) total += p[order[j]];
    int32_t* id_row = ids.ptr<int32_t>() + i * ids.ld();
    float* w_row = weights.ptr<float>() + i * weights.ld();
    for (int j = 0; j < k; ++j) {
      id_row[j] = order[j];
      w_row[j] = renormalize ? p[order[j]] / total : p[order[j]];
    }
  }
}

void Rope(const BatchLayout& layout, const Tensor& x, int64_t head_dim, double theta) {
  JAMBA_CHECK(head_dim % 2 == 0 && x.dim(1) % head_dim == 0);
  const int64_t heads = x.dim(1) / head_dim, half = head_dim / 2;
  // Same float32 arithmetic as transformers: inv_freq = 1 / theta^(2i / hd) in f32, angle =
  // float(pos) * inv_freq in f32, cos/sin in f32.
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  std::vector<float> cs(half), sn(half);
  for (const SeqSlice& s : layout.seqs) {
    for (int32_t t = 0; t < s.n_tokens; ++t) {
      const float pos = static_cast<float>(s.n_past + t);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cs[i] = std::cos(angle);
        sn[i] = std::sin(angle);
      }
      float* row = MutRowF32(x, s.token_begin + t);
      for (int64_t h = 0; h < heads; ++h) {
        float* v = row + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * sn[i];
          v[i + half] = b * cs[i] + a * sn[i];
        }
      }
    }
  }
}

void MoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token, const Tensor& scale,
              const Tensor& counts) {
  JAMBA_CHECK(ids.dtype == DType::kI32 && ids.ndim == 2 && ids.contiguous());
  JAMBA_CHECK(weights.dtype == DType::kF32 && weights.contiguous());
  JAMBA_CHECK(weights.dim(0) == ids.dim(0) && weights.dim(1) == ids.dim(1));
  const int64_t slots = ids.numel(), k = ids.dim(1), e_count = counts.numel();
  JAMBA_CHECK(token.dtype == DType::kI32 && token.numel() == slots && token.contiguous());
  JAMBA_CHECK(scale.dtype == DType::kF32 && scale.numel() == slots && scale.contiguous());
  JAMBA_CHECK(counts.dtype == DType::kI32 && counts.contiguous());
  JAMBA_CHECK(e_count >= 1 && e_count <= kMaxMoeExperts);
  const int32_t* id = ids.ptr<int32_t>();
  int32_t* count = counts.ptr<int32_t>();
  std::fill(count, count + e_count, 0);
  for (int64_t s = 0; s < slots; ++s) {
    JAMBA_CHECK_MSG(id[s] >= 0 && id[s] < e_count, "MoeGroup: expert id out of range");
    ++count[id[s]];
  }
  std::vector<int64_t> next(e_count, 0);
  for (int64_t e = 1; e < e_count; ++e) next[e] = next[e - 1] + count[e - 1];
  for (int64_t s = 0; s < slots; ++s) {  // slots in token order: stable within each expert
    const int64_t at = next[id[s]]++;
    token.ptr<int32_t>()[at] = static_cast<int32_t>(s / k);
    scale.ptr<float>()[at] = weights.ptr<float>()[s];
  }
}

}  // namespace jamba::cpu
