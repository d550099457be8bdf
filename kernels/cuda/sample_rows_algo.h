// The algorithm of the CUDA SampleRows kernel, written once for the device and for a host
// model of a thread block, so CI (without a GPU) checks its logic against the CPU reference
// (kernels/cpu/row_sampler.h) and a GPU run only has to confirm the block primitives.
//
// One block samples one row of V logits. The host sampler sorts; a block cannot afford to, so
// every selection is a search over the order-preserving 32-bit key of the logits:
//  - top-k: the largest key t with count(key >= t) >= k (a 16-way search: 8 passes, each
//    counting at 15 thresholds), ties at t kept in id order up to k (one scan);
//  - top-p: the largest key t whose tail weight sum(w : key >= t) reaches top_p * total, ties
//    at t in id order until the cumulative weight does (rank order = key descending, then id);
//  - the draw: by id when top-p is off, else in that rank order, with the same search.
// So a row costs about 30 passes over its V logits with top-k, top-p and the draw all on (an
// exp per element per weighted pass), one with greedy.
// The result is the reference's token except where a cumulative sum lies within rounding of
// the top-p target or of the draw (the block adds in another order than the host's loop).
//
// Contract of a Block (every member is a collective: all threads of the block call it with the
// same arguments and all receive the same result; f and pred are evaluated for i in [0, V)):
//   int32_t size() const;                       V
//   double Sum(f);                              sum of f(i), in a fixed (deterministic) order
//   void TailSums(key, w, t, n, out);           out[j] = Sum(key(i) >= t[j] ? w(i) : 0), each
//                                               to the bit as Sum would give it, j < n <= 15
//   uint64_t Max(f);                            max of f(i) (uint64_t); 0 when V == 0
//   int32_t FirstCumulative(f, base, target, strict);
//       the first i (in id order) with base + f(0) + ... + f(i) >= target (> target if
//       strict), or -1; f >= 0.
// This header compiles as plain C++ (the host model and tests) and under nvcc.
#ifndef JAMBA_KERNELS_CUDA_SAMPLE_ROWS_ALGO_H_
#define JAMBA_KERNELS_CUDA_SAMPLE_ROWS_ALGO_H_

#include <math.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/row_sampling.h"

#ifdef __CUDACC__
#define JAMBA_HD __host__ __device__
#else
#define JAMBA_HD
#endif

namespace jamba::sample_algo {

JAMBA_HD inline uint32_t FloatBits(float v) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
#endif
}

JAMBA_HD inline float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, 4);
  return v;
#endif
}

// The value a logit ranks by, as the host's RankKey: NaN counts as -inf. -0 becomes +0 so
// that the two zeros, equal as floats, also get equal keys.
JAMBA_HD inline float RankValue(float v) {
  if (v != v) return -INFINITY;
  return v == 0.0f ? 0.0f : v;
}

// Order-preserving key: RankValue(a) < RankValue(b) iff Key(a) < Key(b), equal iff equal.
JAMBA_HD inline uint32_t Key(float v) {
  const uint32_t u = FloatBits(RankValue(v));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

JAMBA_HD inline float KeyValue(uint32_t key) {
  return BitsFloat((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// Thresholds a search step tests at once (one pass over the row answers all of them).
constexpr int kSearchThresholds = 15;

// The largest t in [lo, hi] with pred(t), for pred true at lo and monotone (true, then false).
// eval(t, n, ok) sets ok[j] = pred(t[j]) for n <= kSearchThresholds increasing thresholds, so
// each step narrows the range 16-fold: 8 steps (passes over the row) for 32-bit keys where a
// bisection takes 32. The result is the bisection's: only where pred is evaluated changes.
template <class Eval>
JAMBA_HD uint32_t LargestKeyWhere(uint32_t lo, uint32_t hi, Eval eval) {
  while (lo < hi) {
    // n thresholds cut [lo, hi] into n + 1 parts of near-equal size: every key when the range
    // is small, else 16 parts; increasing, in (lo, hi].
    const uint64_t range = static_cast<uint64_t>(hi) - lo + 1;  // >= 2
    const int n = range <= kSearchThresholds + 1 ? static_cast<int>(range - 1) : kSearchThresholds;
    uint32_t t[kSearchThresholds];
    for (int j = 0; j < n; ++j) {
      t[j] = lo + static_cast<uint32_t>(static_cast<uint64_t>(j + 1) * range / (n + 1));
    }
    bool ok[kSearchThresholds];
    eval(t, n, ok);
    int leading = 0;  // pred holds at t[0 .. leading)
    while (leading < n && ok[leading]) ++leading;
    if (leading == 0) {
      hi = t[0] - 1;
    } else {
      lo = t[leading - 1];
      if (leading < n) hi = t[leading] - 1;
    }
  }
  return lo;
}

template <class Block>
JAMBA_HD int32_t SampleRow(Block& b, const float* x, const RowSampling& p) {
  const int32_t v = b.size();
  const uint32_t neg_inf_key = Key(-INFINITY);
  auto key = [x](int32_t i) { return Key(x[i]); };

  // The best (key, lowest id): the greedy token, and the largest logit.
  const uint64_t best = b.Max([&](int32_t i) {
    return (static_cast<uint64_t>(key(i)) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
  });
  const uint32_t max_key = static_cast<uint32_t>(best >> 32);
  if (p.temperature == 0.0f) return static_cast<int32_t>(0xffffffffu - (best & 0xffffffffu));
  if (max_key == neg_inf_key) return 0;  // every logit is -inf or NaN

  // ---- Top-k: survivors are key > tk, or key == tk and id <= tk_last. --------------------
  uint32_t tk = 0;  // no logit has key 0 (it would be a NaN): "everything above -inf"
  int32_t tk_last = v - 1;
  if (p.top_k > 0 && p.top_k < v) {
    const double k = p.top_k;
    tk = LargestKeyWhere(0, max_key, [&](const uint32_t* t, int n, bool* ok) {
      double tails[kSearchThresholds];
      b.TailSums(
          key, [](int32_t) { return 1.0; }, t, n, tails);
      for (int j = 0; j < n; ++j) ok[j] = tails[j] >= k;
    });
    const double above =
        b.Sum([&](int32_t i) { return key(i) > tk ? 1.0 : 0.0; });  // < k by the search
    tk_last = b.FirstCumulative([&](int32_t i) { return key(i) == tk ? 1.0 : 0.0; }, above, k,
                                /*strict=*/false);
  }
  auto survives = [&](int32_t i) {
    const uint32_t k = key(i);
    return k != neg_inf_key && (k > tk || (k == tk && i <= tk_last));
  };

  // ---- Temperature: unnormalised softmax weights, 1 at the largest logit. ----------------
  const float max_value = KeyValue(max_key);
  const double inv_t = 1.0 / static_cast<double>(p.temperature);
  auto weight = [&](int32_t i) -> double {
    if (!survives(i)) return 0.0;
    const float value = RankValue(x[i]);
    if (max_value == INFINITY) return value == INFINITY ? 1.0 : 0.0;
    return exp((static_cast<double>(value) - max_value) * inv_t);
  };

  // ---- Top-p: keep ranks up to the first whose cumulative weight reaches the target. -----
  const bool ranked = p.top_p < 1.0f;
  uint32_t tp = 0;
  int32_t tp_last = v - 1;
  if (ranked) {
    const double total = b.Sum(weight);
    const double target = static_cast<double>(p.top_p) * total;
    // Every survivor has key >= tk, so the tail sum at tk is the total (the same terms, zeros
    // elsewhere): the search may start there.
    tp = LargestKeyWhere(tk, max_key, [&](const uint32_t* t, int n, bool* ok) {
      double tails[kSearchThresholds];
      b.TailSums(key, weight, t, n, tails);
      for (int j = 0; j < n; ++j) ok[j] = tails[j] >= target;
    });
    const double above = b.Sum([&](int32_t i) { return key(i) > tp ? weight(i) : 0.0; });
    tp_last = b.FirstCumulative([&](int32_t i) { return key(i) == tp ? weight(i) : 0.0; }, above,
                                target, /*strict=*/false);
    if (tp_last < 0) tp_last = v - 1;  // rounding: keep every tie at tp
  }

  // ---- Min-p (weights are relative to the largest), zero weights dropped. ----------------
  const double min_p = p.min_p;
  auto kept = [&](int32_t i) -> double {
    const uint32_t k = key(i);
    if (ranked && !(k > tp || (k == tp && i <= tp_last))) return 0.0;
    const double w = weight(i);
    return w > 0.0 && w >= min_p ? w : 0.0;
  };

  // ---- The draw: the first candidate (in draw order) whose cumulative weight exceeds u. --
  const double total = b.Sum(kept);
  const double target = p.uniform * total;
  if (!ranked) {
    const int32_t i = b.FirstCumulative(kept, 0.0, target, /*strict=*/true);
    if (i >= 0) return i;
    // Rounding left the target at the sum: the last candidate by id.
    return static_cast<int32_t>(b.Max([&](int32_t j) -> uint64_t {
             return kept(j) > 0.0 ? static_cast<uint64_t>(j) + 1 : 0;
           })) -
           1;
  }
  if (!(total > target)) {
    // The last candidate in rank order: the smallest key, then the largest id.
    const uint64_t last = b.Max([&](int32_t j) -> uint64_t {
      return kept(j) > 0.0 ? (static_cast<uint64_t>(~key(j)) << 32) | static_cast<uint32_t>(j) : 0;
    });
    return static_cast<int32_t>(last & 0xffffffffu);
  }
  // Candidates have key >= tp (and >= tk), so the search may start there.
  const uint32_t td =
      LargestKeyWhere(tp > tk ? tp : tk, max_key, [&](const uint32_t* t, int n, bool* ok) {
        double tails[kSearchThresholds];
        b.TailSums(key, kept, t, n, tails);
        for (int j = 0; j < n; ++j) ok[j] = tails[j] > target;
      });
  const double above = b.Sum([&](int32_t i) { return key(i) > td ? kept(i) : 0.0; });
  const int32_t i = b.FirstCumulative([&](int32_t j) { return key(j) == td ? kept(j) : 0.0; },
                                      above, target, /*strict=*/true);
  if (i >= 0) return i;
  return static_cast<int32_t>(b.Max([&](int32_t j) -> uint64_t {
           return key(j) == td && kept(j) > 0.0 ? static_cast<uint64_t>(j) + 1 : 0;
         })) -
         1;
}

// The block geometry both sides share: thread t of T sums elements t, t + T, ... (coalesced
// on the device); scans give thread t the contiguous ids [t * chunk, (t + 1) * chunk).
constexpr int kSampleThreads = 512;

// A host model of the device block (kernels/cuda/sample_rows.cu): the same per-thread order,
// the same warp butterfly and scan, the same combination of warp results, so it computes the
// device's sums to the bit (exp aside). For tests of the algorithm without a GPU.
class HostBlock {
 public:
  // threads: a positive multiple of 32, as a device block.
  HostBlock(int32_t v, int threads = kSampleThreads) : v_(v), threads_(threads) {
    if (threads_ <= 0 || threads_ % 32 != 0) threads_ = kSampleThreads;
  }
  int32_t size() const { return v_; }

  template <class F>
  double Sum(F f) const {
    std::vector<double> local(threads_, 0.0);
    for (int t = 0; t < threads_; ++t) {
      for (int32_t i = t; i < v_; i += threads_) local[t] += f(i);
    }
    return CombineWarps(local);
  }

  template <class K, class W>
  void TailSums(K key, W w, const uint32_t* t, int n, double* out) const {
    std::vector<std::vector<double>> local(n, std::vector<double>(threads_, 0.0));
    for (int th = 0; th < threads_; ++th) {
      for (int32_t i = th; i < v_; i += threads_) {
        const uint32_t k = key(i);
        const double wi = w(i);
        for (int j = 0; j < n; ++j) local[j][th] += k >= t[j] ? wi : 0.0;
      }
    }
    for (int j = 0; j < n; ++j) out[j] = CombineWarps(local[j]);
  }

  template <class F>
  uint64_t Max(F f) const {
    uint64_t m = 0;
    for (int32_t i = 0; i < v_; ++i) {
      const uint64_t x = f(i);
      if (x > m) m = x;
    }
    return m;
  }

  template <class F>
  int32_t FirstCumulative(F f, double base, double target, bool strict) const {
    const int32_t chunk = (v_ + threads_ - 1) / threads_;
    std::vector<double> own(threads_, 0.0);
    for (int t = 0; t < threads_; ++t) {
      for (int32_t i = Begin(t, chunk); i < End(t, chunk); ++i) own[t] += f(i);
    }
    // Warp-inclusive scans (Hillis-Steele, as __shfl_up_sync), then warp totals in order.
    std::vector<double> incl = own;
    for (int w = 0; w < threads_ / 32; ++w) {
      double* lanes = incl.data() + 32 * w;
      for (int off = 1; off < 32; off <<= 1) {
        double next[32];
        for (int l = 0; l < 32; ++l) next[l] = l >= off ? lanes[l - off] + lanes[l] : lanes[l];
        std::memcpy(lanes, next, sizeof(next));
      }
    }
    for (int t = 0; t < threads_; ++t) {
      double c = base;
      for (int w = 0; w < t / 32; ++w) c += incl[32 * w + 31];
      c += (t % 32 == 0) ? 0.0 : incl[t - 1];
      for (int32_t i = Begin(t, chunk); i < End(t, chunk); ++i) {
        c += f(i);
        if (strict ? c > target : c >= target) return i;  // threads hold increasing ids
      }
    }
    return -1;
  }

 private:
  int32_t Begin(int t, int32_t chunk) const {
    const int64_t b = static_cast<int64_t>(t) * chunk;
    return static_cast<int32_t>(b < v_ ? b : v_);
  }
  int32_t End(int t, int32_t chunk) const {
    const int64_t e = static_cast<int64_t>(t + 1) * chunk;
    return static_cast<int32_t>(e < v_ ? e : v_);
  }
  // Butterfly within each warp (every lane ends with the same value), then warps in order.
  double CombineWarps(std::vector<double> local) const {
    double total = 0.0;
    for (int w = 0; w < threads_ / 32; ++w) {
      double* lanes = local.data() + 32 * w;
      for (int off = 16; off > 0; off >>= 1) {
        double next[32];
        for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ off];
        std::memcpy(lanes, next, sizeof(next));
      }
      total += lanes[0];
    }
    return total;
  }

  int32_t v_;
  int threads_;
};

}  // namespace jamba::sample_algo

#endif  // JAMBA_KERNELS_CUDA_SAMPLE_ROWS_ALGO_H_
