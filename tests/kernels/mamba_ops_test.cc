// MambaConv and MambaScan against double-precision recurrences written from the spec
// (model_math.md 1.6 steps 3 and 6-11):
//   conv: c_t[d] = b[d] + sum_j w[d, j] x_{t-K+1+j}[d] (x_s = 0 before a fresh sequence),
//         out = silu(c)
//   scan: dt = softplus(dt_raw), h_t = exp(dt A) h_{t-1} + dt B_t x_t,
//         y_t = (sum_n h_t[n] C_t[n] + D x_t) * silu(z_t)
// The reference holds each sequence's whole history, so chunked runs through the state pool
// must reproduce the one-shot result. Stale pool contents are NaN: a fresh sequence
// (n_past == 0) must not read them.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::RandomVec;
using kernel_test::RefSilu;
using kernel_test::RefSoftplus;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SeqSlice Slice(int32_t begin, int32_t n, int32_t n_past, int32_t slot) {
  SeqSlice s;
  s.token_begin = begin;
  s.n_tokens = n;
  s.n_past = n_past;
  s.mamba_slot = slot;
  return s;
}

BatchLayout Layout(std::vector<SeqSlice> seqs) {
  BatchLayout l;
  for (const SeqSlice& s : seqs) l.n_tokens += s.n_tokens;
  l.seqs = std::move(seqs);
  return l;
}

// ---- Conv ---------------------------------------------------------------------------------

struct ConvParams {
  int64_t di, kw;
  std::vector<float> w;  // [di, kw]
  std::vector<float> b;  // [di]
};

ConvParams MakeConv(std::mt19937* rng, int64_t di, int64_t kw) {
  return {di, kw, RandomVec(rng, di * kw, -1.0f, 1.0f), RandomVec(rng, di, -0.5f, 0.5f)};
}

// Conv outputs of a whole sequence x [L, di] (fresh at position 0), and the magnitude
// |b| + sum |w x| of every pre-activation for the tolerance.
void RefConv(const ConvParams& p, const std::vector<float>& x, int64_t len, bool bias,
             std::vector<double>* out, std::vector<double>* mag) {
  out->assign(len * p.di, 0);
  mag->assign(len * p.di, 0);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t d = 0; d < p.di; ++d) {
      double c = bias ? p.b[d] : 0.0, m = std::fabs(c);
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t s = t - p.kw + 1 + j;
        if (s < 0) continue;
        const double term = static_cast<double>(p.w[d * p.kw + j]) * x[s * p.di + d];
        c += term;
        m += std::fabs(term);
      }
      (*out)[t * p.di + d] = RefSilu(c);
      (*mag)[t * p.di + d] = m;
    }
  }
}

// silu has slope <= 1.1, so an f32 pre-activation error of (K+1) ulps of the magnitude bounds
// the output error, plus the few roundings of silu itself.
void ExpectConvNear(const std::vector<float>& got, const std::vector<double>& want,
                    const std::vector<double>& mag, int64_t kw) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 2 * (kw + 1) * FLT_EPSILON * mag[i] + 4 * FLT_EPSILON * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol) && ++bad <= 5)
      ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << want[i];
  }
  EXPECT_EQ(bad, 0);
}

class MambaConvTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
  std::mt19937 rng_{5};
};

TEST_F(MambaConvTest, HandComputedCrossCorrelation) {
  // di = 1, K = 3, w = [1, 10, 100] (tap K-1 = 100 multiplies the current token), no bias.
  // x = [1, 2, 3]: c = [100, 210, 321]; silu(c) = c for such large c.
  Tensor w = arena_.F32({1, 10, 100}, {1, 3});
  Tensor state = arena_.Filled({1, 1, 2}, kNaN);
  Tensor out = arena_.Zeros(DType::kF32, {3, 1});
  backend_->MambaConv(Layout({Slice(0, 3, 0, 0)}), arena_.F32({1, 2, 3}, {3, 1}), w, nullptr, state,
                      out);
  EXPECT_EQ(arena_.ReadF32(out), (std::vector<float>{100, 210, 321}));
  // The window holds the last K-1 inputs, oldest first.
  EXPECT_EQ(arena_.ReadF32(state), (std::vector<float>{2, 3}));
  // A decode step continues from it: x = 4 -> 2 + 30 + 400 = 432. With a bias of -432 the
  // pre-activation is 0 and silu(0) = 0.
  Tensor b = arena_.F32({-432}, {1});
  Tensor out1 = arena_.Filled({1, 1}, kernel_test::kSentinel);
  backend_->MambaConv(Layout({Slice(0, 1, 3, 0)}), arena_.F32({4}, {1, 1}), w, &b, state, out1);
  EXPECT_EQ(arena_.ReadF32(out1)[0], 0.0f);
  EXPECT_EQ(arena_.ReadF32(state), (std::vector<float>{3, 4}));
}

// A prefill shorter than K-1 leaves zero padding on the left of the window.
TEST_F(MambaConvTest, ShortPrefillWindowIsZeroPadded) {
  const int64_t di = 2, kw = 4;
  Tensor w = arena_.F32(std::vector<float>(di * kw, 1.0f), {di, kw});
  Tensor state = arena_.Filled({1, di, kw - 1}, kNaN);
  Tensor out = arena_.Zeros(DType::kF32, {1, di});
  backend_->MambaConv(Layout({Slice(0, 1, 0, 0)}), arena_.F32({5, 6}, {1, di}), w, nullptr, state,
                      out);
  EXPECT_EQ(arena_.ReadF32(state), (std::vector<float>{0, 0, 5, 0, 0, 6}));
}

// Running a sequence in chunks of 1, 3, 7, ... through the pool equals the whole sequence at
// once; stale (NaN) state is ignored at n_past == 0.
TEST_F(MambaConvTest, ChunkedEqualsWhole) {
  for (int64_t kw : {2, 4}) {
    for (bool bias : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "K=" << kw << " bias=" << bias);
      const int64_t di = 13, len = 22;
      const ConvParams p = MakeConv(&rng_, di, kw);
      const std::vector<float> x = RandomVec(&rng_, len * di, -2.0f, 2.0f);
      std::vector<double> want, mag;
      RefConv(p, x, len, bias, &want, &mag);

      Tensor w = arena_.F32(p.w, {di, kw});
      Tensor b = arena_.F32(p.b, {di});
      const Tensor* bp = bias ? &b : nullptr;
      // Whole sequence at once.
      {
        Tensor state = arena_.Filled({2, di, kw - 1}, kNaN);
        Tensor out = arena_.Zeros(DType::kF32, {len, di});
        backend_->MambaConv(Layout({Slice(0, len, 0, 1)}), arena_.F32(x, {len, di}), w, bp, state,
                            out);
        ExpectConvNear(arena_.ReadF32(out), want, mag, kw);
      }
      // Chunks 1, 3, 7, 1, 3, 7 (= 22), slot 1 of 2; slot 0 must stay untouched.
      Tensor state = arena_.Filled({2, di, kw - 1}, kNaN);
      std::vector<float> got;
      int32_t pos = 0;
      for (int32_t chunk : {1, 3, 7, 1, 3, 7}) {
        std::vector<float> xc(x.begin() + pos * di, x.begin() + (pos + chunk) * di);
        Tensor out = arena_.Zeros(DType::kF32, {chunk, di});
        backend_->MambaConv(Layout({Slice(0, chunk, pos, 1)}), arena_.F32(xc, {chunk, di}), w, bp,
                            state, out);
        const std::vector<float> o = arena_.ReadF32(out);
        got.insert(got.end(), o.begin(), o.end());
        pos += chunk;
      }
      ASSERT_EQ(pos, len);
      ExpectConvNear(got, want, mag, kw);
      const std::vector<float> st = arena_.ReadF32(state);
      for (int64_t i = 0; i < di * (kw - 1); ++i) EXPECT_TRUE(std::isnan(st[i])) << i;
      // Slot 1 holds the last K-1 inputs, oldest first.
      for (int64_t d = 0; d < di; ++d)
        for (int64_t j = 0; j < kw - 1; ++j)
          EXPECT_EQ(st[di * (kw - 1) + d * (kw - 1) + j], x[(len - kw + 1 + j) * di + d]);
    }
  }
}

// n_past == 0 restarts the sequence even if the slot holds a previous sequence's window.
TEST_F(MambaConvTest, FreshSequenceIgnoresStaleWindow) {
  const int64_t di = 5, kw = 4, len = 6;
  const ConvParams p = MakeConv(&rng_, di, kw);
  Tensor w = arena_.F32(p.w, {di, kw});
  Tensor b = arena_.F32(p.b, {di});
  Tensor state = arena_.Zeros(DType::kF32, {1, di, kw - 1});
  // Leave a real (non-zero) window behind from another sequence.
  const std::vector<float> old = RandomVec(&rng_, 4 * di, 3.0f, 5.0f);
  Tensor scratch = arena_.Zeros(DType::kF32, {4, di});
  backend_->MambaConv(Layout({Slice(0, 4, 0, 0)}), arena_.F32(old, {4, di}), w, &b, state, scratch);
  const std::vector<float> x = RandomVec(&rng_, len * di);
  std::vector<double> want, mag;
  RefConv(p, x, len, true, &want, &mag);
  Tensor out = arena_.Zeros(DType::kF32, {len, di});
  backend_->MambaConv(Layout({Slice(0, len, 0, 0)}), arena_.F32(x, {len, di}), w, &b, state, out);
  ExpectConvNear(arena_.ReadF32(out), want, mag, kw);
}

// A ragged batch (fresh prefill, decode and multi-token continuation in different slots) with x
// a column view of a wider in_proj output equals each sequence computed alone; long enough for
// the kernel's heap window (> 64 taps) and its multi-threaded branch.
TEST_F(MambaConvTest, RaggedBatchWithColumnView) {
  const int64_t di = 300, kw = 4;
  const ConvParams p = MakeConv(&rng_, di, kw);
  Tensor w = arena_.F32(p.w, {di, kw});
  Tensor b = arena_.F32(p.b, {di});
  struct Seq {
    int32_t history, n_tokens, slot;
  };
  const std::vector<Seq> seqs = {{0, 70, 2}, {9, 1, 0}, {2, 3, 3}, {1, 1, 1}, {0, 2, 4}};
  const int64_t slots = 6;
  Tensor state = arena_.Filled({slots, di, kw - 1}, kNaN);

  // Full history of each sequence; first absorb the history through the pool one token at a
  // time (exercising decode), then run the batch.
  std::vector<std::vector<float>> xs;
  for (const Seq& s : seqs) {
    xs.push_back(RandomVec(&rng_, (s.history + s.n_tokens) * di, -2.0f, 2.0f));
    for (int32_t t = 0; t < s.history; ++t) {
      std::vector<float> xt(xs.back().begin() + t * di, xs.back().begin() + (t + 1) * di);
      Tensor o = arena_.Zeros(DType::kF32, {1, di});
      backend_->MambaConv(Layout({Slice(0, 1, t, s.slot)}), arena_.F32(xt, {1, di}), w, &b, state,
                          o);
    }
  }
  std::vector<SeqSlice> slices;
  int32_t rows = 0;
  for (const Seq& s : seqs) {
    slices.push_back(Slice(rows, s.n_tokens, s.history, s.slot));
    rows += s.n_tokens;
  }
  // Batch input: x occupies columns [0, di) of an [rows, 2 di] in_proj output.
  std::vector<float> fused(rows * 2 * di, 7.0f);
  for (size_t q = 0, r = 0; q < seqs.size(); ++q)
    for (int32_t t = 0; t < seqs[q].n_tokens; ++t, ++r)
      for (int64_t d = 0; d < di; ++d)
        fused[r * 2 * di + d] = xs[q][(seqs[q].history + t) * di + d];
  Tensor in = arena_.F32(fused, {rows, 2 * di});
  Tensor out = arena_.Zeros(DType::kF32, {rows, di});
  backend_->MambaConv(Layout(slices), in.Cols(0, di), w, &b, state, out);
  const std::vector<float> got = arena_.ReadF32(out);

  for (size_t q = 0; q < seqs.size(); ++q) {
    SCOPED_TRACE(::testing::Message() << "sequence " << q);
    const int64_t len = seqs[q].history + seqs[q].n_tokens;
    std::vector<double> want, mag;
    RefConv(p, xs[q], len, true, &want, &mag);
    const int64_t r0 = slices[q].token_begin;
    std::vector<float> g(got.begin() + r0 * di, got.begin() + (r0 + seqs[q].n_tokens) * di);
    std::vector<double> wv(want.begin() + seqs[q].history * di, want.end());
    std::vector<double> mv(mag.begin() + seqs[q].history * di, mag.end());
    ExpectConvNear(g, wv, mv, kw);
  }
  // Slot 5 is in no sequence: untouched.
  const std::vector<float> st = arena_.ReadF32(state);
  for (int64_t i = 5 * di * (kw - 1); i < slots * di * (kw - 1); ++i)
    EXPECT_TRUE(std::isnan(st[i]));
}

// ---- Scan ---------------------------------------------------------------------------------

struct ScanParams {
  int64_t di, ns;
  std::vector<float> A;  // [di, ns], = -exp(A_log)
  std::vector<float> D;  // [di]
};

ScanParams MakeScan(std::mt19937* rng, int64_t di, int64_t ns) {
  ScanParams p{di, ns, RandomVec(rng, di * ns, 0.0f, std::log(16.0f)), RandomVec(rng, di)};
  for (float& a : p.A) a = -std::exp(a);
  return p;
}

// Per-token inputs of one sequence, row-major [len, *].
struct ScanInputs {
  int64_t len;
  std::vector<float> x, dt, B, C, z;
};

ScanInputs MakeScanInputs(std::mt19937* rng, const ScanParams& p, int64_t len) {
  ScanInputs in{len,
                RandomVec(rng, len * p.di, -2.0f, 2.0f),
                RandomVec(rng, len * p.di, -6.0f, 3.0f),
                RandomVec(rng, len * p.ns, -1.5f, 1.5f),
                RandomVec(rng, len * p.ns, -1.5f, 1.5f),
                RandomVec(rng, len * p.di, -3.0f, 3.0f)};
  // Some dt above PyTorch's softplus threshold of 20 (softplus(x) = x there).
  for (int64_t i = 0; i < len * p.di; i += 11) in.dt[i] = 20.5f + (i % 3);
  return in;
}

// Outputs of the whole sequence from a zero state; `mag` bounds the size of every term
// (sum_n |h C| + |D x|) |silu z|; `h_last` is the final state [di, ns].
void RefScan(const ScanParams& p, const ScanInputs& in, std::vector<double>* y,
             std::vector<double>* mag, std::vector<double>* h_last) {
  std::vector<double> h(p.di * p.ns, 0.0);
  y->assign(in.len * p.di, 0);
  mag->assign(in.len * p.di, 0);
  for (int64_t t = 0; t < in.len; ++t) {
    for (int64_t d = 0; d < p.di; ++d) {
      const double dt = RefSoftplus(in.dt[t * p.di + d]);
      const double x = in.x[t * p.di + d];
      double acc = 0, m = 0;
      for (int64_t n = 0; n < p.ns; ++n) {
        double& hv = h[d * p.ns + n];
        hv = std::exp(dt * p.A[d * p.ns + n]) * hv + dt * in.B[t * p.ns + n] * x;
        acc += hv * in.C[t * p.ns + n];
        m += std::fabs(hv * in.C[t * p.ns + n]);
      }
      acc += static_cast<double>(p.D[d]) * x;
      m += std::fabs(static_cast<double>(p.D[d]) * x);
      const double g = RefSilu(in.z[t * p.di + d]);
      (*y)[t * p.di + d] = acc * g;
      (*mag)[t * p.di + d] = m * std::fabs(g);
    }
  }
  *h_last = h;
}

// The f32 state after t steps carries O(t) roundings of its own size (the decay exp(dt A) < 1
// keeps it bounded), each readout N more; 64 ulps of the term magnitude covers both for the
// lengths used here (<= 30 steps), while any wrong term is off by O(1).
void ExpectScanNear(const std::vector<float>& got, const std::vector<double>& want,
                    const std::vector<double>& mag) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 64 * FLT_EPSILON * mag[i] + 1e-30;
    if (!(std::fabs(got[i] - want[i]) <= tol) && ++bad <= 5)
      ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << want[i] << " (tol " << tol
                    << ")";
  }
  EXPECT_EQ(bad, 0);
}

class MambaScanTest : public ::testing::Test {
 protected:
  // Runs one batch. Rows of the batch are the concatenation of `rows_of` per sequence; B and C
  // are column views of an x_proj-like [n, R + 2N] buffer and z of an in_proj-like [n, 2 Di].
  std::vector<float> Run(const ScanParams& p, const BatchLayout& layout,
                         const std::vector<const ScanInputs*>& ins,
                         const std::vector<int64_t>& first_row, const Tensor& state) {
    const int64_t n = layout.n_tokens, di = p.di, ns = p.ns, r = 3;
    std::vector<float> x(n * di), dt(n * di), xp(n * (r + 2 * ns), 9.0f), zp(n * 2 * di, 9.0f);
    for (size_t q = 0; q < layout.seqs.size(); ++q) {
      const SeqSlice& s = layout.seqs[q];
      for (int32_t t = 0; t < s.n_tokens; ++t) {
        const int64_t row = s.token_begin + t, src = first_row[q] + t;
        for (int64_t d = 0; d < di; ++d) {
          x[row * di + d] = ins[q]->x[src * di + d];
          dt[row * di + d] = ins[q]->dt[src * di + d];
          zp[row * 2 * di + di + d] = ins[q]->z[src * di + d];
        }
        for (int64_t k = 0; k < ns; ++k) {
          xp[row * (r + 2 * ns) + r + k] = ins[q]->B[src * ns + k];
          xp[row * (r + 2 * ns) + r + ns + k] = ins[q]->C[src * ns + k];
        }
      }
    }
    Tensor xproj = arena_.F32(xp, {n, r + 2 * ns});
    Tensor inproj = arena_.F32(zp, {n, 2 * di});
    MambaScanArgs a;
    a.x = arena_.F32(x, {n, di});
    a.dt = arena_.F32(dt, {n, di});
    a.A = arena_.F32(p.A, {di, ns});
    a.B = xproj.Cols(r, ns);
    a.C = xproj.Cols(r + ns, ns);
    a.D = arena_.F32(p.D, {di});
    a.z = inproj.Cols(di, di);
    a.state = state;
    a.y = arena_.Filled({n, di}, kernel_test::kSentinel);
    backend_->MambaScan(layout, a);
    return arena_.ReadF32(a.y);
  }

  std::vector<float> RunOne(const ScanParams& p, const ScanInputs& in, int64_t first, int32_t count,
                            int32_t slot, const Tensor& state) {
    return Run(p, Layout({Slice(0, count, static_cast<int32_t>(first), slot)}), {&in}, {first},
               state);
  }

  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
  std::mt19937 rng_{9};
};

// di = N = 1, A = -1, dt_raw = 0 -> dt = ln 2, decay exp(-ln 2) = 1/2; B = 2, C = 0.5, D = 1.
// t=1, x=1: h = 2 ln2;           y = (0.5 h + 1) silu(1)
// t=2, x=3: h = ln2 + 6 ln2;     y = (0.5 h + 3) silu(-2)
TEST_F(MambaScanTest, HandComputed) {
  const ScanParams p{1, 1, {-1.0f}, {1.0f}};
  const ScanInputs in{2, {1, 3}, {0, 0}, {2, 2}, {0.5f, 0.5f}, {1, -2}};
  Tensor state = arena_.Filled({1, 1, 1}, kNaN);
  const std::vector<float> y = RunOne(p, in, 0, 2, 0, state);
  const double ln2 = std::log(2.0);
  const double h1 = 2 * ln2, h2 = 0.5 * h1 + 2 * ln2 * 3;
  EXPECT_NEAR(y[0], (0.5 * h1 + 1) * (1 / (1 + std::exp(-1.0))), 1e-6);
  EXPECT_NEAR(y[1], (0.5 * h2 + 3) * (-2 / (1 + std::exp(2.0))), 1e-6);
  EXPECT_NEAR(arena_.ReadF32(state)[0], h2, 1e-6);
}

// softplus threshold: dt_raw = 30 gives dt = 30 exactly; A = -0.1 -> decay exp(-3).
TEST_F(MambaScanTest, HandComputedLargeDt) {
  const ScanParams p{1, 1, {-0.1f}, {0.0f}};
  const ScanInputs in{2, {1, 1}, {30, 30}, {1, 1}, {1, 1}, {40, 40}};
  Tensor state = arena_.Zeros(DType::kF32, {1, 1, 1});
  const std::vector<float> y = RunOne(p, in, 0, 2, 0, state);
  const double h1 = 30, h2 = std::exp(-3.0) * 30 + 30;
  EXPECT_NEAR(y[0], h1 * 40, 1e-3);  // silu(40) = 40 in f32
  EXPECT_NEAR(y[1], h2 * 40, 1e-3);
}

TEST_F(MambaScanTest, WholeSequenceAgainstRecurrence) {
  for (int64_t ns : {1, 4, 16}) {
    for (int64_t di : {1, 7, 64}) {
      SCOPED_TRACE(::testing::Message() << "N=" << ns << " Di=" << di);
      const ScanParams p = MakeScan(&rng_, di, ns);
      const ScanInputs in = MakeScanInputs(&rng_, p, 20);
      std::vector<double> want, mag, h;
      RefScan(p, in, &want, &mag, &h);
      Tensor state = arena_.Filled({2, di, ns}, kNaN);
      ExpectScanNear(RunOne(p, in, 0, 20, 1, state), want, mag);
      // The slot holds h_last; slot 0 is untouched.
      const std::vector<float> st = arena_.ReadF32(state);
      for (int64_t i = 0; i < di * ns; ++i) {
        EXPECT_TRUE(std::isnan(st[i]));
        EXPECT_NEAR(st[di * ns + i], h[i], 64 * FLT_EPSILON * (std::fabs(h[i]) + 1)) << i;
      }
    }
  }
}

// Chunks 1, 3, 7, ... through the pool equal the whole sequence; NaN stale state is ignored at
// n_past == 0; sizes above the kernel's multi-threading threshold.
TEST_F(MambaScanTest, ChunkedEqualsWhole) {
  const int64_t di = 40, ns = 16, len = 29;
  const ScanParams p = MakeScan(&rng_, di, ns);
  const ScanInputs in = MakeScanInputs(&rng_, p, len);
  std::vector<double> want, mag, h;
  RefScan(p, in, &want, &mag, &h);
  Tensor state = arena_.Filled({3, di, ns}, kNaN);
  std::vector<float> got;
  int32_t pos = 0;
  for (int32_t chunk : {1, 3, 7, 1, 3, 7, 7}) {
    const std::vector<float> y = RunOne(p, in, pos, chunk, 2, state);
    got.insert(got.end(), y.begin(), y.end());
    pos += chunk;
  }
  ASSERT_EQ(pos, len);
  ExpectScanNear(got, want, mag);
}

TEST_F(MambaScanTest, FreshSequenceIgnoresStaleState) {
  const int64_t di = 6, ns = 4;
  const ScanParams p = MakeScan(&rng_, di, ns);
  Tensor state = arena_.Zeros(DType::kF32, {1, di, ns});
  // Another sequence leaves a non-zero state in slot 0.
  const ScanInputs old = MakeScanInputs(&rng_, p, 5);
  RunOne(p, old, 0, 5, 0, state);
  const ScanInputs in = MakeScanInputs(&rng_, p, 4);
  std::vector<double> want, mag, h;
  RefScan(p, in, &want, &mag, &h);
  ExpectScanNear(RunOne(p, in, 0, 4, 0, state), want, mag);
}

// A ragged batch of a fresh prefill, a decode, a continuation and another fresh sequence in
// scattered slots equals each sequence's own recurrence.
TEST_F(MambaScanTest, RaggedBatch) {
  const int64_t di = 24, ns = 8;
  const ScanParams p = MakeScan(&rng_, di, ns);
  struct Seq {
    int32_t history, n_tokens, slot;
  };
  const std::vector<Seq> seqs = {{0, 6, 3}, {11, 1, 0}, {4, 5, 5}, {0, 1, 1}};
  Tensor state = arena_.Filled({7, di, ns}, kNaN);
  std::vector<ScanInputs> ins;
  for (const Seq& s : seqs) {
    ins.push_back(MakeScanInputs(&rng_, p, s.history + s.n_tokens));
    // Absorb the history (in one chunk) into the slot.
    if (s.history > 0) RunOne(p, ins.back(), 0, s.history, s.slot, state);
  }
  std::vector<SeqSlice> slices;
  std::vector<const ScanInputs*> ptrs;
  std::vector<int64_t> first;
  int32_t rows = 0;
  for (size_t q = 0; q < seqs.size(); ++q) {
    slices.push_back(Slice(rows, seqs[q].n_tokens, seqs[q].history, seqs[q].slot));
    ptrs.push_back(&ins[q]);
    first.push_back(seqs[q].history);
    rows += seqs[q].n_tokens;
  }
  const std::vector<float> got = Run(p, Layout(slices), ptrs, first, state);
  const std::vector<float> st = arena_.ReadF32(state);
  for (size_t q = 0; q < seqs.size(); ++q) {
    SCOPED_TRACE(::testing::Message() << "sequence " << q);
    std::vector<double> want, mag, h;
    RefScan(p, ins[q], &want, &mag, &h);
    const int64_t r0 = slices[q].token_begin, n = seqs[q].n_tokens;
    std::vector<float> g(got.begin() + r0 * di, got.begin() + (r0 + n) * di);
    ExpectScanNear(g, std::vector<double>(want.begin() + seqs[q].history * di, want.end()),
                   std::vector<double>(mag.begin() + seqs[q].history * di, mag.end()));
    for (int64_t i = 0; i < di * ns; ++i)
      EXPECT_NEAR(st[seqs[q].slot * di * ns + i], h[i], 64 * FLT_EPSILON * (std::fabs(h[i]) + 1));
  }
  // Slots 2, 4 and 6 belong to no sequence.
  for (int slot : {2, 4, 6})
    for (int64_t i = 0; i < di * ns; ++i) EXPECT_TRUE(std::isnan(st[slot * di * ns + i]));
}

}  // namespace
}  // namespace jamba
