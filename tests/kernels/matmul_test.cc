// MatMul (y = x w^T + bias) against a double-precision loop, for f32 and bf16 weights, on
// shapes that reach the dot ("skinny") kernel (its 4-token blocks and 1..3 tails, its token
// blocking), the BLAS path (reached through a backend with batch_invariant = false above
// SkinnyThreshold() rows), and their multi-threaded branches, with strided x / y views and row
// views of w. Batch invariance (the default CPU backend's documented property) is checked
// bit for bit.
//
// Tolerance: any summation order of k f32 products satisfies
// |y - y_exact| <= gamma_{k+1} * (sum_j |x_j||w_j| + |b|), gamma_k ~ k * 2^-24. The tests allow
// 4x that bound, so a wrong index, a missing term or a lost tail is caught at any size.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::MakeStrided;
using kernel_test::RandomVec;
using kernel_test::ReadStrided;
using kernel_test::RefBf16ToF32;
using kernel_test::StridedF32;
using kernel_test::TruncToBf16;

// kInvariant / kFast: Backend::MatMul of a backend with batch_invariant true / false.
enum class Path { kInvariant, kFast, kSkinny, kBlas };

struct Case {
  int64_t n, k, m;
  bool bf16;
  bool bias;
  bool strided;  // x and y as column views of wider buffers, w as a row view
  Path path = Path::kInvariant;
};

std::string Describe(const Case& c) {
  return "n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) + " m=" + std::to_string(c.m) +
         (c.bf16 ? " bf16" : " f32") + (c.bias ? " bias" : "") + (c.strided ? " strided" : "") +
         (c.path == Path::kSkinny ? " skinny"
          : c.path == Path::kBlas ? " blas"
          : c.path == Path::kFast ? " fast"
                                  : " invariant");
}

void RunCase(const Case& c, uint32_t seed) {
  SCOPED_TRACE(Describe(c));
  BackendOptions options;
  options.batch_invariant = c.path != Path::kFast;
  std::unique_ptr<Backend> backend = CreateCpuBackend(options);
  DeviceArena arena(backend.get());
  std::mt19937 rng(seed);

  const std::vector<float> x = RandomVec(&rng, c.n * c.k);
  // The weight as the kernel sees it (f32 values of the stored dtype), rows [w_row0, +m) of a
  // taller matrix when strided.
  const int64_t w_row0 = c.strided ? 3 : 0, w_rows = c.m + (c.strided ? 5 : 0);
  std::vector<float> w_all = RandomVec(&rng, w_rows * c.k);
  std::vector<uint16_t> w_bf16(w_all.size());
  if (c.bf16) {
    for (size_t i = 0; i < w_all.size(); ++i) {
      w_bf16[i] = TruncToBf16(w_all[i]);
      w_all[i] = RefBf16ToF32(w_bf16[i]);
    }
  }
  const std::vector<float> b = RandomVec(&rng, c.m);

  Tensor w_full = c.bf16 ? arena.Bf16(w_bf16, {w_rows, c.k}) : arena.F32(w_all, {w_rows, c.k});
  Tensor w = w_full.Rows(w_row0, c.m);
  Tensor bias = arena.F32(b, {c.m});

  const int64_t x_ld = c.strided ? c.k + 5 : c.k, x_col0 = c.strided ? 2 : 0;
  const int64_t y_ld = c.strided ? c.m + 7 : c.m, y_col0 = c.strided ? 4 : 0;
  StridedF32 xs = MakeStrided(&arena, x, c.n, c.k, x_ld, x_col0);
  StridedF32 ys = MakeStrided(&arena, std::vector<float>(c.n * c.m, kernel_test::kSentinel), c.n,
                              c.m, y_ld, y_col0);

  const Tensor* bias_ptr = c.bias ? &bias : nullptr;
  switch (c.path) {
    case Path::kInvariant:
    case Path::kFast:
      backend->MatMul(xs.view, w, bias_ptr, ys.view);
      break;
    case Path::kSkinny:
      cpu::MatMulSkinny(xs.view, w, bias_ptr, ys.view);
      break;
    case Path::kBlas:
      cpu::MatMulBlas(xs.view, w, bias_ptr, ys.view);
      break;
  }
  ASSERT_TRUE(backend->Synchronize().ok());
  const std::vector<float> y = ReadStrided(&arena, ys);
  // The input must not change either.
  EXPECT_EQ(ReadStrided(&arena, xs), x);

  int bad = 0;
  for (int64_t i = 0; i < c.n; ++i) {
    for (int64_t j = 0; j < c.m; ++j) {
      double ref = c.bias ? static_cast<double>(b[j]) : 0.0;
      double mag = std::fabs(ref);
      for (int64_t t = 0; t < c.k; ++t) {
        const double p = static_cast<double>(x[i * c.k + t]) *
                         static_cast<double>(w_all[(w_row0 + j) * c.k + t]);
        ref += p;
        mag += std::fabs(p);
      }
      const double tol = 4.0 * (c.k + 1) * (FLT_EPSILON / 2) * mag + 1e-30;
      const double got = y[i * c.m + j];
      if (!(std::fabs(got - ref) <= tol) && ++bad <= 5) {
        ADD_FAILURE() << "y[" << i << "," << j << "] = " << got << ", want " << ref << " (tol "
                      << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

// Without batch invariance, rows of x from 1 to 8 take the dot kernel (blocks of 4 tokens plus
// a 1..3 tail) and more rows the BLAS path; the shapes below straddle that threshold.
TEST(MatMulTest, ThresholdIsWhatTheShapesBelowAssume) { EXPECT_EQ(cpu::SkinnyThreshold(), 8); }

TEST(MatMulTest, AllPathsAndOddShapes) {
  const int64_t ns[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 33};
  const int64_t ks[] = {1, 7, 8, 13, 64, 67};
  const int64_t ms[] = {1, 2, 7, 64, 65, 130};
  uint32_t seed = 1;
  for (int64_t n : ns)
    for (int64_t k : ks)
      for (int64_t m : ms)
        for (bool bf16 : {false, true})
          for (bool bias : {false, true})
            for (Path path : {Path::kInvariant, Path::kFast})
              RunCase({n, k, m, bf16, bias, false, path}, seed++);
}

TEST(MatMulTest, StridedViews) {
  uint32_t seed = 1000;
  for (int64_t n : {1, 3, 4, 6, 8, 9, 20})
    for (int64_t k : {13, 40})
      for (int64_t m : {7, 66})
        for (bool bf16 : {false, true})
          for (bool bias : {false, true})
            for (Path path : {Path::kInvariant, Path::kFast})
              RunCase({n, k, m, bf16, bias, true, path}, seed++);
}

// Sizes above the kernels' parallelisation thresholds (dot kernel: m*k*tokens > 65536; bf16
// BLAS: several 64-row panels), an odd m for the last single-row block, and row counts past the
// dot kernel's 48-token blocking.
TEST(MatMulTest, LargeMultiThreaded) {
  uint32_t seed = 2000;
  for (bool bf16 : {false, true}) {
    for (Path path : {Path::kInvariant, Path::kFast}) {
      RunCase({1, 260, 301, bf16, true, false, path}, seed++);
      RunCase({4, 260, 301, bf16, false, true, path}, seed++);
      RunCase({7, 517, 257, bf16, true, false, path}, seed++);
      RunCase({12, 260, 301, bf16, true, true, path}, seed++);
      RunCase({40, 129, 200, bf16, false, false, path}, seed++);
      RunCase({100, 67, 130, bf16, true, true, path}, seed++);
    }
  }
}

// The default CPU backend is batch invariant: each row of y is bit-identical whether x holds
// that row alone or sits at any position of a batch of any size.
TEST(MatMulTest, BatchInvariantByDefault) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  std::mt19937 rng(4000);
  for (bool bf16 : {false, true}) {
    const int64_t k = 77, m = 45, max_n = 61;
    const std::vector<float> x = RandomVec(&rng, max_n * k);
    std::vector<float> wf = RandomVec(&rng, m * k);
    std::vector<uint16_t> wb(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) wb[i] = TruncToBf16(wf[i]);
    const Tensor w = bf16 ? arena.Bf16(wb, {m, k}) : arena.F32(wf, {m, k});
    const Tensor bias = arena.F32(RandomVec(&rng, m), {m});
    const Tensor xt = arena.F32(x, {max_n, k});
    // Each row alone.
    std::vector<float> alone(max_n * m);
    for (int64_t i = 0; i < max_n; ++i) {
      Tensor y = arena.Zeros(DType::kF32, {1, m});
      backend->MatMul(xt.Rows(i, 1), w, &bias, y);
      const std::vector<float> r = arena.ReadF32(y);
      std::copy(r.begin(), r.end(), alone.begin() + i * m);
    }
    for (int64_t first : {0, 3}) {
      for (int64_t n : {2, 3, 4, 5, 8, 9, 17, 48, 49, 58}) {
        SCOPED_TRACE(::testing::Message()
                     << (bf16 ? "bf16" : "f32") << " rows " << first << ".." << first + n);
        Tensor y = arena.Zeros(DType::kF32, {n, m});
        backend->MatMul(xt.Rows(first, n), w, &bias, y);
        const std::vector<float> got = arena.ReadF32(y);
        EXPECT_EQ(std::memcmp(got.data(), alone.data() + first * m, n * m * sizeof(float)), 0);
      }
    }
  }
}

// Both variants are complete implementations of the contract for any row count.
TEST(MatMulTest, VariantsOutsideTheirDispatchRange) {
  uint32_t seed = 3000;
  for (bool bf16 : {false, true}) {
    for (bool strided : {false, true}) {
      RunCase({1, 13, 7, bf16, true, strided, Path::kBlas}, seed++);
      RunCase({3, 67, 65, bf16, false, strided, Path::kBlas}, seed++);
      RunCase({12, 13, 7, bf16, true, strided, Path::kSkinny}, seed++);
      RunCase({21, 67, 130, bf16, true, strided, Path::kSkinny}, seed++);
    }
  }
}

TEST(MatMulTest, HandComputed) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  // x [2, 3], w [2, 3], bias [2].
  Tensor x = arena.F32({1, 2, 3, -1, 0.5f, 2}, {2, 3});
  Tensor w = arena.F32({1, 0, -1, 0.25f, 2, 4}, {2, 3});
  Tensor b = arena.F32({10, -1}, {2});
  Tensor y = arena.Zeros(DType::kF32, {2, 2});
  backend->MatMul(x, w, &b, y);
  // Row 0: 1 - 3 + 10 = 8; 0.25 + 4 + 12 - 1 = 15.25. Row 1: -1 - 2 + 10 = 7;
  // -0.25 + 1 + 8 - 1 = 7.75.
  EXPECT_EQ(arena.ReadF32(y), (std::vector<float>{8, 15.25f, 7, 7.75f}));
}

TEST(MatMulTest, Bf16WeightsAreWidenedExactly) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  // bf16 bit patterns: 0x3FC0 = 1.5, 0xC020 = -2.5, 0x4100 = 8, 0x3E80 = 0.25.
  Tensor x = arena.F32({2, 4}, {1, 2});
  Tensor w = arena.Bf16({0x3FC0, 0xC020, 0x4100, 0x3E80}, {2, 2});
  Tensor y = arena.Zeros(DType::kF32, {1, 2});
  backend->MatMul(x, w, nullptr, y);
  // 2 * 1.5 + 4 * -2.5 = -7; 2 * 8 + 4 * 0.25 = 17.
  EXPECT_EQ(arena.ReadF32(y), (std::vector<float>{-7, 17}));
  // The same through the BLAS path (12 identical rows).
  std::vector<float> xs;
  for (int i = 0; i < 12; ++i) xs.insert(xs.end(), {2, 4});
  Tensor x12 = arena.F32(xs, {12, 2});
  Tensor y12 = arena.Zeros(DType::kF32, {12, 2});
  backend->MatMul(x12, w, nullptr, y12);
  const std::vector<float> got = arena.ReadF32(y12);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(got[2 * i], -7);
    EXPECT_EQ(got[2 * i + 1], 17);
  }
}

TEST(MatMulTest, ZeroRowsIsANoOp) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  std::vector<float> x(4 * 5, 1.0f), w(3 * 5, 1.0f);
  Tensor xt = arena.F32(x, {4, 5});
  Tensor wt = arena.F32(w, {3, 5});
  Tensor y = arena.Filled({4, 3}, kernel_test::kSentinel);
  backend->MatMul(xt.Rows(0, 0), wt, nullptr, y.Rows(0, 0));
  for (float v : arena.ReadF32(y)) EXPECT_EQ(v, kernel_test::kSentinel);
}

// MatMulPrecision::kBf16, by hand: x = (1 + 2^-8, 1 + 3 * 2^-8) rounds to nearest even in
// bf16 (7 fraction bits) to (1, 1 + 2^-6), both ties; with w = (1, -1), x w^T is -2^-6 from
// the rounded x and -2^-7 from x itself. Products with bf16 and int8 weights (and the grouped
// ones, which are made of them) round; f32 weights do not; kF32 never does.
TEST(MatMulPrecisionTest, Bf16RoundsActivationsOfBf16AndInt8ProductsOnly) {
  const float rounded = -std::ldexp(1.0f, -6), exact = -std::ldexp(1.0f, -7);
  for (MatMulPrecision precision : {MatMulPrecision::kBf16, MatMulPrecision::kF32}) {
    SCOPED_TRACE(precision == MatMulPrecision::kBf16 ? "bf16" : "f32");
    const float want = precision == MatMulPrecision::kBf16 ? rounded : exact;
    std::unique_ptr<Backend> backend =
        CreateCpuBackend(BackendOptions{.matmul_precision = precision});
    DeviceArena arena(backend.get());
    const Tensor x =
        arena.F32({1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8)}, {1, 2});
    const Tensor w_bf16 = arena.Bf16({0x3f80, 0xbf80}, {1, 2});  // 1, -1
    const Tensor w_i8 = arena.I8({1, -1}, {1, 2}), scale = arena.F32({1.0f}, {1});
    const Tensor w_f32 = arena.F32({1.0f, -1.0f}, {1, 2});
    const Tensor y = arena.Filled({1, 1}, NAN);
    backend->MatMul(x, w_bf16, nullptr, y);
    EXPECT_EQ(arena.ReadF32(y)[0], want) << "bf16 weights";
    backend->MatMulInt8(x, w_i8, scale, nullptr, y);
    EXPECT_EQ(arena.ReadF32(y)[0], want) << "int8 weights";
    const Tensor counts = arena.I32({1}, {1});
    backend->MatMulGrouped(x, {w_bf16}, {}, counts, y);
    EXPECT_EQ(arena.ReadF32(y)[0], want) << "grouped bf16 weights";
    backend->MatMul(x, w_f32, nullptr, y);
    EXPECT_EQ(arena.ReadF32(y)[0], exact) << "f32 weights";
  }
}

}  // namespace
}  // namespace jamba
