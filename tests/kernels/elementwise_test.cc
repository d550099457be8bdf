// Row-wise / elementwise ops (Embed, RmsNorm, SiluMul, Add, Zero, GatherRows,
// ScatterAddScaled) and the Backend memory functions, against double-precision loops written
// from the formulas in kernels/backend.h and the spec (RMSNorm: x * rsqrt(mean(x^2) + eps) * w),
// plus small hand-computed cases.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::kSentinel;
using kernel_test::MakeStrided;
using kernel_test::RandomVec;
using kernel_test::ReadStrided;
using kernel_test::RefBf16ToF32;
using kernel_test::RefSilu;
using kernel_test::StridedF32;
using kernel_test::TruncToBf16;

class ElementwiseTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
  std::mt19937 rng_{42};
};

// ---- Memory -----------------------------------------------------------------------------

TEST_F(ElementwiseTest, UploadDownloadRoundTrip) {
  const std::vector<float> v = RandomVec(&rng_, 3 * 5);
  Tensor t = arena_.F32(v, {3, 5});
  EXPECT_EQ(t.device, Device::kCpu);
  EXPECT_EQ(t.ndim, 2);
  EXPECT_EQ(t.dim(0), 3);
  EXPECT_EQ(t.dim(1), 5);
  EXPECT_TRUE(t.contiguous());
  EXPECT_EQ(arena_.ReadF32(t), v);
}

TEST_F(ElementwiseTest, MemoryErrorsAreStatuses) {
  EXPECT_EQ(backend_->Allocate(DType::kF32, {2, -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Tensor t = arena_.Zeros(DType::kF32, {4, 4});
  std::vector<float> host(16);
  // Wrong byte count.
  EXPECT_EQ(backend_->Upload(host.data(), 15 * sizeof(float), t).code(),
            absl::StatusCode::kInvalidArgument);
  // Non-contiguous views cannot be copied as a block.
  EXPECT_EQ(backend_->Upload(host.data(), 8 * sizeof(float), t.Cols(1, 2)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->Download(t.Cols(1, 2), host.data()).code(),
            absl::StatusCode::kInvalidArgument);
  // A row range of a contiguous tensor is contiguous.
  EXPECT_TRUE(backend_->Download(t.Rows(1, 2), host.data()).ok());
  EXPECT_TRUE(backend_->Synchronize().ok());
}

// ---- Embed ------------------------------------------------------------------------------

TEST_F(ElementwiseTest, EmbedF32) {
  const int64_t vocab = 11, h = 13;
  const std::vector<float> table = RandomVec(&rng_, vocab * h);
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7};  // repeats, first and last row
  Tensor out = arena_.Filled({5, h}, kSentinel);
  backend_->Embed(arena_.F32(table, {vocab, h}), arena_.I32(ids, {5}), out);
  const std::vector<float> got = arena_.ReadF32(out);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t j = 0; j < h; ++j) EXPECT_EQ(got[i * h + j], table[ids[i] * h + j]);
}

TEST_F(ElementwiseTest, EmbedBf16) {
  const int64_t vocab = 9, h = 17;
  const std::vector<float> src = RandomVec(&rng_, vocab * h, -40.0f, 40.0f);
  std::vector<uint16_t> table(src.size());
  for (size_t i = 0; i < src.size(); ++i) table[i] = TruncToBf16(src[i]);
  table[2 * h + 1] = 0x8000;  // -0
  table[2 * h + 2] = 0x0001;  // smallest bf16 subnormal
  table[2 * h + 3] = 0x7F80;  // +inf
  const std::vector<int32_t> ids = {2, 8, 0, 2};
  Tensor out = arena_.Filled({4, h}, kSentinel);
  backend_->Embed(arena_.Bf16(table, {vocab, h}), arena_.I32(ids, {4}), out);
  const std::vector<float> got = arena_.ReadF32(out);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t j = 0; j < h; ++j) {
      const float want = RefBf16ToF32(table[ids[i] * h + j]);
      EXPECT_EQ(std::memcmp(&got[i * h + j], &want, sizeof(float)), 0)
          << "row " << i << " col " << j << ": " << got[i * h + j] << " vs " << want;
    }
  }
  // Hand check of the special values of row 0 (id 2).
  EXPECT_TRUE(std::signbit(got[1]) && got[1] == 0.0f);
  EXPECT_EQ(got[2], std::ldexp(1.0f, -133));
  EXPECT_EQ(got[3], std::numeric_limits<float>::infinity());
}

// ---- RmsNorm ----------------------------------------------------------------------------

// out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * w, in double.
std::vector<double> RefRmsNorm(const std::vector<float>& x, const std::vector<float>* w, int64_t n,
                               int64_t d, double eps) {
  std::vector<double> out(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[i * d + j]) * x[i * d + j];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = x[i * d + j] * r * (w ? (*w)[j] : 1.0);
  }
  return out;
}

// A handful of f32 roundings, each relative: a few ulps of the result.
void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, double rel,
                double abs = 0.0) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = rel * std::fabs(want[i]) + abs;
    if (!(std::fabs(got[i] - want[i]) <= tol) && ++bad <= 5)
      ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << want[i];
  }
  EXPECT_EQ(bad, 0);
}

TEST_F(ElementwiseTest, RmsNormHandComputed) {
  // Row [2, -2]: mean square 4 -> scale 1/2. Row [3, 4]: mean square 12.5.
  Tensor x = arena_.F32({2, -2, 3, 4}, {2, 2});
  Tensor w = arena_.F32({1, 0.5f}, {2});
  Tensor out = arena_.Zeros(DType::kF32, {2, 2});
  backend_->RmsNorm(x, &w, 0.0f, out);
  const std::vector<float> got = arena_.ReadF32(out);
  EXPECT_FLOAT_EQ(got[0], 1.0f);
  EXPECT_FLOAT_EQ(got[1], -0.5f);
  EXPECT_FLOAT_EQ(got[2], 3.0f / std::sqrt(12.5f));
  EXPECT_FLOAT_EQ(got[3], 0.5f * 4.0f / std::sqrt(12.5f));
  // eps inside the square root: [1, 1] with eps 3 -> 1 / sqrt(1 + 3) = 0.5, weightless.
  Tensor ones = arena_.F32({1, 1}, {1, 2});
  Tensor out1 = arena_.Zeros(DType::kF32, {1, 2});
  backend_->RmsNorm(ones, nullptr, 3.0f, out1);
  EXPECT_EQ(arena_.ReadF32(out1), (std::vector<float>{0.5f, 0.5f}));
}

// RmsNormGroups: each group of columns normalised over itself; hand values, then equality with
// RmsNorm of each column view (the same bits) on a strided view with a weightless group.
TEST_F(ElementwiseTest, RmsNormGroupsNormalisesEachGroupAlone) {
  // Groups [2, -2 | 3, 4 | 5]: scales 1/2, 1/sqrt(12.5), 1/5; weights (1, 0.5), none, (2).
  Tensor x = arena_.F32({2, -2, 3, 4, 5}, {1, 5});
  Tensor w0 = arena_.F32({1, 0.5f}, {2});
  Tensor w2 = arena_.F32({2}, {1});
  const int64_t widths[] = {2, 2, 1};
  const Tensor* weights[] = {&w0, nullptr, &w2};
  backend_->RmsNormGroups(x, widths, weights, 0.0f);
  const std::vector<float> got = arena_.ReadF32(x);
  EXPECT_FLOAT_EQ(got[0], 1.0f);
  EXPECT_FLOAT_EQ(got[1], -0.5f);
  EXPECT_FLOAT_EQ(got[2], 3.0f / std::sqrt(12.5f));
  EXPECT_FLOAT_EQ(got[3], 4.0f / std::sqrt(12.5f));
  EXPECT_FLOAT_EQ(got[4], 2.0f);

  const int64_t n = 6, r = 48, ns = 16, d = r + 2 * ns;
  const std::vector<float> values = RandomVec(&rng_, n * d, -3.0f, 3.0f);
  const Tensor wr = arena_.F32(RandomVec(&rng_, r, 0.5f, 2.0f), {r});
  const Tensor wc = arena_.F32(RandomVec(&rng_, ns, 0.5f, 2.0f), {ns});
  auto grouped = kernel_test::MakeStrided(&arena_, values, n, d, d + 5, 3);
  auto separate = kernel_test::MakeStrided(&arena_, values, n, d, d + 5, 3);
  const int64_t mamba_widths[] = {r, ns, ns};
  const Tensor* mamba_weights[] = {&wr, nullptr, &wc};
  backend_->RmsNormGroups(grouped.view, mamba_widths, mamba_weights, 1e-6f);
  backend_->RmsNorm(separate.view.Cols(0, r), &wr, 1e-6f, separate.view.Cols(0, r));
  backend_->RmsNorm(separate.view.Cols(r, ns), nullptr, 1e-6f, separate.view.Cols(r, ns));
  backend_->RmsNorm(separate.view.Cols(r + ns, ns), &wc, 1e-6f, separate.view.Cols(r + ns, ns));
  EXPECT_EQ(kernel_test::ReadStrided(&arena_, grouped),
            kernel_test::ReadStrided(&arena_, separate));
}

TEST_F(ElementwiseTest, RmsNormRandomWeightedAndWeightless) {
  for (int64_t d : {1, 7, 64, 4096 + 3}) {
    for (int64_t n : {1, 5, 12}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " d=" << d);
      const std::vector<float> x = RandomVec(&rng_, n * d, -3.0f, 3.0f);
      const std::vector<float> w = RandomVec(&rng_, d, 0.5f, 2.0f);
      Tensor xt = arena_.F32(x, {n, d});
      Tensor wt = arena_.F32(w, {d});
      for (bool weighted : {true, false}) {
        for (float eps : {1e-6f, 1e-5f, 0.25f}) {
          Tensor out = arena_.Zeros(DType::kF32, {n, d});
          backend_->RmsNorm(xt, weighted ? &wt : nullptr, eps, out);
          ExpectNear(arena_.ReadF32(out), RefRmsNorm(x, weighted ? &w : nullptr, n, d, eps), 1e-6);
        }
      }
      EXPECT_EQ(arena_.ReadF32(xt), x);  // input untouched
    }
  }
}

// eps dominates when the row is tiny: x = 1e-4 everywhere, eps = 1e-6 -> scale 1/sqrt(1.01e-6).
TEST_F(ElementwiseTest, RmsNormSmallValuesUseEps) {
  const std::vector<float> x(8, 1e-4f);
  Tensor out = arena_.Zeros(DType::kF32, {1, 8});
  backend_->RmsNorm(arena_.F32(x, {1, 8}), nullptr, 1e-6f, out);
  ExpectNear(arena_.ReadF32(out), RefRmsNorm(x, nullptr, 1, 8, 1e-6f), 1e-6);
}

TEST_F(ElementwiseTest, RmsNormStridedAndInPlace) {
  const int64_t n = 6, d = 19;
  const std::vector<float> x = RandomVec(&rng_, n * d, -2.0f, 2.0f);
  const std::vector<float> w = RandomVec(&rng_, d, -1.0f, 1.0f);
  Tensor wt = arena_.F32(w, {d});
  const std::vector<double> want = RefRmsNorm(x, &w, n, d, 1e-5);

  StridedF32 xs = MakeStrided(&arena_, x, n, d, d + 9, 3);
  StridedF32 os = MakeStrided(&arena_, std::vector<float>(n * d, kSentinel), n, d, d + 4, 1);
  backend_->RmsNorm(xs.view, &wt, 1e-5f, os.view);
  ExpectNear(ReadStrided(&arena_, os), want, 1e-6);
  EXPECT_EQ(ReadStrided(&arena_, xs), x);

  // out aliases x.
  backend_->RmsNorm(xs.view, &wt, 1e-5f, xs.view);
  ExpectNear(ReadStrided(&arena_, xs), want, 1e-6);
}

// ---- SiluMul ----------------------------------------------------------------------------

TEST_F(ElementwiseTest, SiluMulHandComputed) {
  // silu(0) = 0; silu(x) -> x for large x; silu(x) -> 0 for very negative x.
  Tensor g = arena_.F32({0, 50, -200, 1}, {1, 4});
  Tensor u = arena_.F32({5, 2, 3, 2}, {1, 4});
  Tensor out = arena_.Filled({1, 4}, kSentinel);
  backend_->SiluMul(g, u, out);
  const std::vector<float> got = arena_.ReadF32(out);
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_FLOAT_EQ(got[1], 100.0f);
  EXPECT_EQ(got[2], 0.0f);
  EXPECT_FLOAT_EQ(got[3], static_cast<float>(2.0 / (1.0 + std::exp(-1.0))));
}

TEST_F(ElementwiseTest, SiluMulRandomStridedAndAliased) {
  const int64_t n = 7, d = 37;
  const std::vector<float> g = RandomVec(&rng_, n * d, -25.0f, 25.0f);
  const std::vector<float> u = RandomVec(&rng_, n * d, -3.0f, 3.0f);
  std::vector<double> want(n * d);
  for (int64_t i = 0; i < n * d; ++i) want[i] = RefSilu(g[i]) * u[i];

  // Gate and up as the two halves of one fused [n, 2d] buffer (how the MLP uses it).
  std::vector<float> fused(n * 2 * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      fused[i * 2 * d + j] = g[i * d + j];
      fused[i * 2 * d + d + j] = u[i * d + j];
    }
  Tensor f = arena_.F32(fused, {n, 2 * d});
  StridedF32 os = MakeStrided(&arena_, std::vector<float>(n * d, kSentinel), n, d, d + 3, 2);
  backend_->SiluMul(f.Cols(0, d), f.Cols(d, d), os.view);
  ExpectNear(ReadStrided(&arena_, os), want, 4 * FLT_EPSILON, 1e-30);

  // out aliases gate.
  backend_->SiluMul(f.Cols(0, d), f.Cols(d, d), f.Cols(0, d));
  const std::vector<float> after = arena_.ReadF32(f);
  std::vector<float> got(n * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      got[i * d + j] = after[i * 2 * d + j];
      EXPECT_EQ(after[i * 2 * d + d + j], u[i * d + j]);
    }
  ExpectNear(got, want, 4 * FLT_EPSILON, 1e-30);
}

// ---- Add / Zero -------------------------------------------------------------------------

TEST_F(ElementwiseTest, AddIsExactF32Addition) {
  const int64_t n = 5, d = 33;
  const std::vector<float> a = RandomVec(&rng_, n * d, -10.0f, 10.0f);
  const std::vector<float> acc = RandomVec(&rng_, n * d, -10.0f, 10.0f);
  Tensor at = arena_.F32(a, {n, d});
  Tensor acct = arena_.F32(acc, {n, d});
  backend_->Add(at, acct);
  const std::vector<float> got = arena_.ReadF32(acct);
  // One correctly rounded addition: the double sum of two floats of similar size is exact.
  for (int64_t i = 0; i < n * d; ++i)
    EXPECT_EQ(got[i], static_cast<float>(static_cast<double>(a[i]) + acc[i])) << i;
  EXPECT_EQ(arena_.ReadF32(at), a);
}

TEST_F(ElementwiseTest, ZeroClearsOnlyTheView) {
  const int64_t n = 4, d = 6;
  StridedF32 s = MakeStrided(&arena_, RandomVec(&rng_, n * d), n, d, d + 5, 2);
  backend_->Zero(s.view);
  for (float v : ReadStrided(&arena_, s)) EXPECT_EQ(v, 0.0f);
  Tensor c = arena_.Filled({3, 4}, 7.0f);
  backend_->Zero(c.Rows(1, 1));
  EXPECT_EQ(arena_.ReadF32(c), (std::vector<float>{7, 7, 7, 7, 0, 0, 0, 0, 7, 7, 7, 7}));
}

// ---- GatherRows / ScatterAddScaled ------------------------------------------------------

TEST_F(ElementwiseTest, GatherRows) {
  const int64_t n = 6, d = 9;
  const std::vector<float> x = RandomVec(&rng_, n * d);
  const std::vector<int32_t> idx = {5, 0, 0, 3, 5, 1, 2};
  Tensor out = arena_.Filled({7, d}, kSentinel);
  backend_->GatherRows(arena_.F32(x, {n, d}), arena_.I32(idx, {7}), out);
  const std::vector<float> got = arena_.ReadF32(out);
  for (size_t i = 0; i < idx.size(); ++i)
    for (int64_t j = 0; j < d; ++j) EXPECT_EQ(got[i * d + j], x[idx[i] * d + j]);
}

TEST_F(ElementwiseTest, ScatterAddScaledHandComputed) {
  // out [3, 2] starts at 1; rows go to 2, 0, 2 with scales 0.5, 2, -1.
  Tensor out = arena_.Filled({3, 2}, 1.0f);
  Tensor rows = arena_.F32({2, 4, 3, 1, 1, 8}, {3, 2});
  backend_->ScatterAddScaled(rows, arena_.I32({2, 0, 2}, {3}), arena_.F32({0.5f, 2, -1}, {3}), out);
  // out[0] = 1 + 2*[3, 1] = [7, 3]; out[1] untouched; out[2] = 1 + 0.5*[2, 4] - [1, 8] = [1, -5].
  EXPECT_EQ(arena_.ReadF32(out), (std::vector<float>{7, 3, 1, 1, 1, -5}));
}

TEST_F(ElementwiseTest, ScatterAddScaledRandom) {
  const int64_t n = 5, m = 12, d = 21;
  const std::vector<float> rows = RandomVec(&rng_, m * d);
  const std::vector<float> scale = RandomVec(&rng_, m, 0.0f, 1.0f);
  const std::vector<float> base = RandomVec(&rng_, n * d);
  std::vector<int32_t> idx(m);
  std::uniform_int_distribution<int32_t> pick(0, n - 2);  // row n-1 never receives anything
  for (int32_t& i : idx) i = pick(rng_);
  Tensor out = arena_.F32(base, {n, d});
  backend_->ScatterAddScaled(arena_.F32(rows, {m, d}), arena_.I32(idx, {m}), arena_.F32(scale, {m}),
                             out);
  std::vector<double> want(base.begin(), base.end()), mag(n * d);
  for (int64_t i = 0; i < n * d; ++i) mag[i] = std::fabs(base[i]);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) {
      want[idx[i] * d + j] += static_cast<double>(scale[i]) * rows[i * d + j];
      mag[idx[i] * d + j] += std::fabs(static_cast<double>(scale[i]) * rows[i * d + j]);
    }
  const std::vector<float> got = arena_.ReadF32(out);
  for (int64_t i = 0; i < n * d; ++i) {
    EXPECT_NEAR(got[i], want[i], 2 * (m + 1) * FLT_EPSILON * mag[i]) << i;
  }
  for (int64_t j = 0; j < d; ++j) EXPECT_EQ(got[(n - 1) * d + j], base[(n - 1) * d + j]);
}

// Sequential semantics: the result is the left-to-right f32 sum, bit for bit, whatever the
// scheduling. Values chosen so that a different order rounds differently: 1 + 2^-24 + 2^-24
// is 1 in order, but 1 + 2^-23 if the two small terms were added first.
TEST_F(ElementwiseTest, ScatterAddScaledOrderIsFixed) {
  const float tiny = std::ldexp(1.0f, -24);
  Tensor out = arena_.Zeros(DType::kF32, {1, 1});
  backend_->ScatterAddScaled(arena_.F32({1, tiny, tiny}, {3, 1}), arena_.I32({0, 0, 0}, {3}),
                             arena_.F32({1, 1, 1}, {3}), out);
  EXPECT_EQ(arena_.ReadF32(out)[0], 1.0f);
}

}  // namespace
}  // namespace jamba
