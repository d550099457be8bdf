// Causal GQA attention over a paged KV cache, on the CPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace jamba::cpu {

void Attention(const BatchLayout& layout, const AttentionArgs& a) {
  const int64_t nh = a.num_heads, nkv = a.num_kv_heads, hd = a.head_dim;
  JAMBA_CHECK(nh > 0 && nkv > 0 && nh % nkv == 0 && hd > 0);
  JAMBA_CHECK(a.q.dim(1) == nh * hd && a.k.dim(1) == nkv * hd && a.v.dim(1) == nkv * hd);
  JAMBA_CHECK(a.out.dim(1) == nh * hd);
  JAMBA_CHECK(a.k_cache.ndim == 4 && a.k_cache.dim(2) == nkv && a.k_cache.dim(3) == hd);
  const int64_t bs = a.k_cache.dim(1);
  JAMBA_CHECK(bs == layout.kv_block_size);
  const int64_t rep = nh / nkv;
  const int64_t block_stride = a.k_cache.stride[0];  // elements per block (bs * nkv * hd)
  float* kc = a.k_cache.ptr<float>();
  float* vc = a.v_cache.ptr<float>();

  // 1. Append the new keys/values at positions n_past .. n_past + n - 1.
  for (const SeqSlice& s : layout.seqs) {
    const std::vector<int32_t>& table = layout.block_tables[s.kv_seq];
    for (int32_t t = 0; t < s.n_tokens; ++t) {
      const int64_t pos = s.n_past + t;
      JAMBA_CHECK(pos / bs < static_cast<int64_t>(table.size()));
      const int64_t blk = table[pos / bs];
      JAMBA_CHECK(blk >= 0 && blk < a.k_cache.dim(0));
      const int64_t off = blk * block_stride + (pos % bs) * nkv * hd;
      const int64_t row = s.token_begin + t;
      std::memcpy(kc + off, a.k.ptr<float>() + row * a.k.ld(), nkv * hd * sizeof(float));
      std::memcpy(vc + off, a.v.ptr<float>() + row * a.v.ld(), nkv * hd * sizeof(float));
    }
  }

  // 2. For each (token, head): softmax(q.k * scale) over visible positions, in f32.
  struct Work {
    const SeqSlice* seq;
    int32_t t;
  };
  std::vector<Work> work;
  work.reserve(layout.n_tokens);
  for (const SeqSlice& s : layout.seqs)
    for (int32_t t = 0; t < s.n_tokens; ++t) work.push_back({&s, t});
  const int64_t items = static_cast<int64_t>(work.size()) * nh;
  // Visible positions summed over tokens: the work, in units of one q.k of one head.
  int64_t visible_total = 0;
  for (const Work& wk : work) visible_total += wk.seq->n_past + wk.t + 1;
  // A parallel region costs microseconds (much more when another process holds a core), so
  // small attention runs on the calling thread.
#pragma omp parallel if (visible_total * nh * hd > (int64_t{1} << 17))
  {
    std::vector<float> scores;
    std::vector<float> acc(hd);
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < items; ++it) {
      const Work& wk = work[it / nh];
      const int64_t h = it % nh, kvh = h / rep;
      const SeqSlice& s = *wk.seq;
      const std::vector<int32_t>& table = layout.block_tables[s.kv_seq];
      const int64_t row = s.token_begin + wk.t;
      const int64_t visible = s.n_past + wk.t + 1;
      const float* q = a.q.ptr<float>() + row * a.q.ld() + h * hd;
      scores.resize(visible);
      float mx = -INFINITY;
      for (int64_t p = 0; p < visible; ++p) {
        const float* kp = kc + table[p / bs] * block_stride + (p % bs) * nkv * hd + kvh * hd;
        float dot = 0.0f;
        for (int64_t j = 0; j < hd; ++j) dot += q[j] * kp[j];
        scores[p] = dot * a.scale;
        mx = std::max(mx, scores[p]);
      }
      float sum = 0.0f;
      for (int64_t p = 0; p < visible; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      const float inv = 1.0f / sum;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p < visible; ++p) {
        const float* vp = vc + table[p / bs] * block_stride + (p % bs) * nkv * hd + kvh * hd;
        const float wgt = scores[p] * inv;
        for (int64_t j = 0; j < hd; ++j) acc[j] += wgt * vp[j];
      }
      float* o = a.out.ptr<float>() + row * a.out.ld() + h * hd;
      std::memcpy(o, acc.data(), hd * sizeof(float));
    }
  }
}

}  // namespace jamba::cpu
