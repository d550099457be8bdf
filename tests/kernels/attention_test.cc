// Attention over the paged KV cache against naive softmax attention in double:
//   out[i, h] = sum_{j <= pos_i} softmax_j(scale * q[i, h] . k[j, h / (nh / nkv)]) v[j, ...]
// with the keys/values of every sequence kept in plain host arrays by the test. Covers block
// size 4 with non-contiguous block tables, GQA (nkv < nh), MQA and MHA, causal prefill,
// decode and multi-token continuation at n_past > 0, and ragged batches mixing them.
//
// Tolerance per (row, head): an f32 score error of (hd + 2) ulps of S = scale * max_j
// sum |q||k_j| changes each softmax weight by a relative ~2x that, and the weighted sum adds
// (visible + 2) ulps; both scale with Vmax = max_j |v_j|. 4x that bound is allowed.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::kSentinel;
using kernel_test::RandomVec;

struct Dims {
  int64_t nh, nkv, hd;
  float scale;
};

// One sequence's full history: q/k/v of every position [len, heads * hd].
struct SeqData {
  int64_t len = 0;
  std::vector<float> q, k, v;
};

SeqData MakeSeq(std::mt19937* rng, const Dims& d, int64_t len, float q_scale = 1.0f) {
  SeqData s;
  s.len = len;
  s.q = RandomVec(rng, len * d.nh * d.hd, -q_scale, q_scale);
  s.k = RandomVec(rng, len * d.nkv * d.hd);
  s.v = RandomVec(rng, len * d.nkv * d.hd, -2.0f, 2.0f);
  return s;
}

// Checks rows [first, first + count) of `s` (its output rows start at row `got_row0` of `got`)
// against naive attention over positions [0, pos].
void CheckRows(const Dims& d, const SeqData& s, int64_t first, int64_t count,
               const std::vector<float>& got, int64_t got_row0) {
  const int64_t rep = d.nh / d.nkv, qw = d.nh * d.hd, kw = d.nkv * d.hd;
  int bad = 0;
  for (int64_t i = first; i < first + count; ++i) {
    for (int64_t h = 0; h < d.nh; ++h) {
      const int64_t g = h / rep;
      const float* q = &s.q[i * qw + h * d.hd];
      std::vector<double> sc(i + 1);
      double mx = -INFINITY, smax = 0, vmax = 0;
      for (int64_t j = 0; j <= i; ++j) {
        const float* k = &s.k[j * kw + g * d.hd];
        double dot = 0, mag = 0;
        for (int64_t e = 0; e < d.hd; ++e) {
          dot += static_cast<double>(q[e]) * k[e];
          mag += std::fabs(static_cast<double>(q[e]) * k[e]);
        }
        sc[j] = dot * d.scale;
        mx = std::max(mx, sc[j]);
        smax = std::max(smax, mag * std::fabs(d.scale));
        for (int64_t e = 0; e < d.hd; ++e)
          vmax = std::max(vmax, std::fabs(static_cast<double>(s.v[j * kw + g * d.hd + e])));
      }
      double sum = 0;
      for (double& x : sc) sum += x = std::exp(x - mx);
      const double tol = 4 * ((d.hd + 2) * 2 * smax + (i + 3)) * (FLT_EPSILON / 2) * vmax + 1e-30;
      for (int64_t e = 0; e < d.hd; ++e) {
        double want = 0;
        for (int64_t j = 0; j <= i; ++j) want += sc[j] / sum * s.v[j * kw + g * d.hd + e];
        const double out = got[(got_row0 + i - first) * qw + h * d.hd + e];
        if (!(std::fabs(out - want) <= tol) && ++bad <= 5) {
          ADD_FAILURE() << "position " << i << " head " << h << " dim " << e << ": " << out
                        << " vs " << want << " (tol " << tol << ")";
        }
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

class AttentionTest : public ::testing::Test {
 protected:
  static constexpr int32_t kBlock = 4;

  // One sequence of a batch: rows [first, first + count) of `data`, at n_past = first.
  struct Part {
    const SeqData* data;
    int64_t first, count;
    int32_t kv_seq;
  };

  void MakeCache(const Dims& d, int64_t num_blocks) {
    k_cache_ = arena_.Filled({num_blocks, kBlock, d.nkv, d.hd}, kSentinel);
    v_cache_ = arena_.Filled({num_blocks, kBlock, d.nkv, d.hd}, kSentinel);
  }

  // Runs one Attention call; returns out [n, nh * hd].
  std::vector<float> Run(const Dims& d, const std::vector<Part>& parts,
                         const std::vector<std::vector<int32_t>>& tables) {
    BatchLayout layout;
    layout.kv_block_size = kBlock;
    layout.block_tables = tables;
    const int64_t qw = d.nh * d.hd, kw = d.nkv * d.hd;
    std::vector<float> q, k, v;
    for (const Part& p : parts) {
      SeqSlice s;
      s.token_begin = layout.n_tokens;
      s.n_tokens = static_cast<int32_t>(p.count);
      s.n_past = static_cast<int32_t>(p.first);
      s.kv_seq = p.kv_seq;
      layout.seqs.push_back(s);
      layout.n_tokens += s.n_tokens;
      q.insert(q.end(), p.data->q.begin() + p.first * qw,
               p.data->q.begin() + (p.first + p.count) * qw);
      k.insert(k.end(), p.data->k.begin() + p.first * kw,
               p.data->k.begin() + (p.first + p.count) * kw);
      v.insert(v.end(), p.data->v.begin() + p.first * kw,
               p.data->v.begin() + (p.first + p.count) * kw);
    }
    const int64_t n = layout.n_tokens;
    AttentionArgs a;
    a.q = arena_.F32(q, {n, qw});
    a.k = arena_.F32(k, {n, kw});
    a.v = arena_.F32(v, {n, kw});
    a.k_cache = k_cache_;
    a.v_cache = v_cache_;
    a.num_heads = d.nh;
    a.num_kv_heads = d.nkv;
    a.head_dim = d.hd;
    a.scale = d.scale;
    a.out = arena_.Filled({n, qw}, kSentinel);
    backend_->Attention(layout, a);
    EXPECT_TRUE(backend_->Synchronize().ok());
    return arena_.ReadF32(a.out);
  }

  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
  std::mt19937 rng_{17};
  Tensor k_cache_, v_cache_;
};

// Softmax over a single key is 1: the first row of a prefill returns v[0] of its KV head.
TEST_F(AttentionTest, FirstRowAttendsOnlyToItself) {
  const Dims d{4, 2, 3, 0.5f};
  // q/k arbitrary; v of position 0 = [1, 2, 3 | 4, 5, 6] for KV heads 0 and 1.
  SeqData s;
  s.len = 2;
  s.q = RandomVec(&rng_, 2 * 12);
  s.k = RandomVec(&rng_, 2 * 6);
  s.v = {1, 2, 3, 4, 5, 6, 100, 200, 300, 400, 500, 600};
  MakeCache(d, 3);
  const std::vector<float> out = Run(d, {{&s, 0, 2, 0}}, {{2}});
  // Query heads 0, 1 -> KV head 0; heads 2, 3 -> KV head 1.
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 12),
            (std::vector<float>{1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}));
}

// Equal keys give uniform weights: row i is the mean of v[0..i].
TEST_F(AttentionTest, HandComputedUniformWeights) {
  const Dims d{1, 1, 2, 1.0f};
  SeqData s;
  s.len = 3;
  s.q = {1, 1, 1, 1, 1, 1};
  s.k = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  s.v = {3, 0, 0, 6, 9, 3};
  MakeCache(d, 2);
  const std::vector<float> out = Run(d, {{&s, 0, 3, 0}}, {{1}});
  EXPECT_FLOAT_EQ(out[0], 3);
  EXPECT_FLOAT_EQ(out[1], 0);
  EXPECT_FLOAT_EQ(out[2], 1.5f);
  EXPECT_FLOAT_EQ(out[3], 3);
  EXPECT_FLOAT_EQ(out[4], 4);
  EXPECT_FLOAT_EQ(out[5], 3);
}

// Prefill of 10 positions over blocks {5, 2, 7}; the cache rows land at
// [table[p / 4], p % 4] and nothing else in the pool is written.
TEST_F(AttentionTest, PrefillWritesPagedCacheAndIsCausal) {
  const Dims d{6, 2, 8, 1.0f / std::sqrt(8.0f)};
  const SeqData s = MakeSeq(&rng_, d, 10);
  MakeCache(d, 9);
  const std::vector<int32_t> table = {5, 2, 7};
  const std::vector<float> out = Run(d, {{&s, 0, 10, 0}}, {table});
  CheckRows(d, s, 0, 10, out, 0);

  const std::vector<float> kc = arena_.ReadF32(k_cache_), vc = arena_.ReadF32(v_cache_);
  const int64_t kw = d.nkv * d.hd, per_block = kBlock * kw;
  std::vector<bool> written(9 * per_block, false);
  for (int64_t p = 0; p < 10; ++p) {
    const int64_t off = table[p / kBlock] * per_block + (p % kBlock) * kw;
    for (int64_t e = 0; e < kw; ++e) {
      EXPECT_EQ(kc[off + e], s.k[p * kw + e]);
      EXPECT_EQ(vc[off + e], s.v[p * kw + e]);
      written[off + e] = true;
    }
  }
  for (size_t i = 0; i < written.size(); ++i) {
    if (written[i]) continue;
    ASSERT_EQ(kc[i], kSentinel) << i;
    ASSERT_EQ(vc[i], kSentinel) << i;
  }
}

// Later positions do not influence earlier rows: changing k/v of the future leaves the
// outputs of the past bit-identical.
TEST_F(AttentionTest, FutureKeysAreMasked) {
  const Dims d{2, 1, 4, 0.5f};
  SeqData a = MakeSeq(&rng_, d, 6);
  SeqData b = a;
  for (int64_t i = 3 * 4; i < 6 * 4; ++i) {
    b.k[i] *= 50.0f;
    b.v[i] += 100.0f;
  }
  MakeCache(d, 2);
  const std::vector<float> out_a = Run(d, {{&a, 0, 6, 0}}, {{1, 0}});
  MakeCache(d, 2);
  const std::vector<float> out_b = Run(d, {{&b, 0, 6, 0}}, {{1, 0}});
  for (int64_t i = 0; i < 3 * 8; ++i) EXPECT_EQ(out_a[i], out_b[i]) << i;
}

// Prefill 7, decode 3 single steps, then continue with a 5-token chunk (n_past = 10), the
// table growing as a real scheduler would grow it; each call against the full history.
TEST_F(AttentionTest, DecodeAndContinuation) {
  for (const Dims& d : {Dims{8, 2, 16, 0.25f}, Dims{4, 1, 8, 0.35f}, Dims{3, 3, 5, 0.4f}}) {
    SCOPED_TRACE(::testing::Message() << "nh=" << d.nh << " nkv=" << d.nkv << " hd=" << d.hd);
    const SeqData s = MakeSeq(&rng_, d, 15);
    MakeCache(d, 8);
    std::vector<int32_t> table = {6, 1};
    CheckRows(d, s, 0, 7, Run(d, {{&s, 0, 7, 0}}, {table}), 0);
    for (int64_t p = 7; p < 10; ++p) {
      if (p / kBlock >= static_cast<int64_t>(table.size())) table.push_back(3);
      CheckRows(d, s, p, 1, Run(d, {{&s, p, 1, 0}}, {table}), 0);
    }
    table.push_back(0);
    CheckRows(d, s, 10, 5, Run(d, {{&s, 10, 5, 0}}, {table}), 0);
  }
}

// Large scores (|q.k| scale ~ 100) must not overflow: the softmax subtracts the maximum.
TEST_F(AttentionTest, LargeScoresAreStable) {
  const Dims d{2, 2, 16, 1.0f};
  const SeqData s = MakeSeq(&rng_, d, 9, 40.0f);
  MakeCache(d, 3);
  const std::vector<float> out = Run(d, {{&s, 0, 9, 0}}, {{2, 0, 1}});
  for (float v : out) ASSERT_TRUE(std::isfinite(v));
  CheckRows(d, s, 0, 9, out, 0);
}

// One batch: a fresh prefill, two decodes and a continuation chunk of four sequences with
// interleaved physical blocks, listed in an order different from their kv_seq indices. Equals
// the reference and each sequence run alone.
TEST_F(AttentionTest, RaggedBatchMixedPrefillAndDecode) {
  const Dims d{4, 2, 8, 1.0f / std::sqrt(8.0f)};
  const SeqData s0 = MakeSeq(&rng_, d, 5);   // prefill 5
  const SeqData s1 = MakeSeq(&rng_, d, 10);  // history 9, decode 1
  const SeqData s2 = MakeSeq(&rng_, d, 7);   // history 4, continue 3
  const SeqData s3 = MakeSeq(&rng_, d, 2);   // history 1, decode 1
  // block tables, indexed by kv_seq: s0 -> 2, s1 -> 0, s2 -> 3, s3 -> 1.
  const std::vector<std::vector<int32_t>> tables = {{4, 9, 1}, {6}, {10, 0}, {3, 7}};
  for (bool alone : {false, true}) {
    SCOPED_TRACE(alone ? "alone" : "batched");
    MakeCache(d, 11);
    // Absorb the histories.
    Run(d, {{&s1, 0, 9, 0}}, tables);
    Run(d, {{&s2, 0, 4, 3}}, tables);
    Run(d, {{&s3, 0, 1, 1}}, tables);
    const std::vector<Part> parts = {
        {&s2, 4, 3, 3}, {&s0, 0, 5, 2}, {&s1, 9, 1, 0}, {&s3, 1, 1, 1}};
    if (!alone) {
      const std::vector<float> out = Run(d, parts, tables);
      CheckRows(d, s2, 4, 3, out, 0);
      CheckRows(d, s0, 0, 5, out, 3);
      CheckRows(d, s1, 9, 1, out, 8);
      CheckRows(d, s3, 1, 1, out, 9);
    } else {
      for (const Part& p : parts) {
        SCOPED_TRACE(::testing::Message() << "kv_seq " << p.kv_seq);
        CheckRows(d, *p.data, p.first, p.count, Run(d, {p}, tables), 0);
      }
    }
  }
}

// A longer prefill over 10 scattered blocks, enough (token, head) items for every thread.
TEST_F(AttentionTest, LongPrefillManyBlocks) {
  const Dims d{8, 4, 32, 1.0f / std::sqrt(32.0f)};
  const SeqData s = MakeSeq(&rng_, d, 37);
  MakeCache(d, 12);
  const std::vector<float> out = Run(d, {{&s, 0, 37, 0}}, {{11, 3, 5, 0, 8, 2, 10, 1, 7, 4}});
  CheckRows(d, s, 0, 37, out, 0);
}

}  // namespace
}  // namespace jamba
