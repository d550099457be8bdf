// MatMulInt8 (y = scale[r] * x . w_int8[r] + bias[r]) on the CPU backend against a double loop
// over the dequantised weights, on shapes that reach every block size and tail of the dot
// kernel, with strided x / y; hand-computed values; batch invariance bit for bit.
// Tolerance: as matmul_test.cc, 4 x gamma_{k+2} of sum |x||scale w| + |b| (one more rounding
// for the scale).
#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::MakeStrided;
using kernel_test::RandomVec;
using kernel_test::ReadStrided;

std::vector<int8_t> RandomInt8(std::mt19937* rng, size_t n) {
  std::uniform_int_distribution<int> d(-127, 127);
  std::vector<int8_t> v(n);
  for (int8_t& x : v) x = static_cast<int8_t>(d(*rng));
  return v;
}

TEST(MatMulInt8Test, AgainstDoubleReference) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  std::mt19937 rng(8100);
  for (int64_t n : {1, 2, 3, 5, 9, 50}) {
    for (int64_t k : {7, 64, 301}) {
      for (bool strided : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " k " << k << " strided " << strided);
        DeviceArena arena(backend.get());
        const int64_t m = 37;
        const std::vector<float> x = RandomVec(&rng, n * k, -2.0f, 2.0f);
        const std::vector<int8_t> w = RandomInt8(&rng, m * k);
        const std::vector<float> scale = RandomVec(&rng, m, 0.001f, 0.05f);
        const std::vector<float> bias = RandomVec(&rng, m);
        const Tensor wt = arena.I8(w, {m, k});
        const Tensor st = arena.F32(scale, {m});
        const Tensor bt = arena.F32(bias, {m});
        std::vector<float> got;
        if (strided) {
          auto xs = MakeStrided(&arena, x, n, k, k + 3, 2);
          auto ys = MakeStrided(&arena, std::vector<float>(n * m, 0.0f), n, m, m + 5, 1);
          backend->MatMulInt8(xs.view, wt, st, &bt, ys.view);
          got = ReadStrided(&arena, ys);  // also checks the margin is untouched
        } else {
          const Tensor xt = arena.F32(x, {n, k});
          const Tensor yt = arena.Zeros(DType::kF32, {n, m});
          backend->MatMulInt8(xt, wt, st, &bt, yt);
          got = arena.ReadF32(yt);
        }
        ASSERT_EQ(got.size(), static_cast<size_t>(n * m));
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t r = 0; r < m; ++r) {
            double ref = bias[r], mag = std::fabs(bias[r]);
            for (int64_t j = 0; j < k; ++j) {
              const double p = static_cast<double>(x[i * k + j]) * scale[r] * w[r * k + j];
              ref += p;
              mag += std::fabs(p);
            }
            const double tol = 4.0 * (k + 2) * (FLT_EPSILON / 2) * mag;
            ASSERT_NEAR(got[i * m + r], ref, tol) << "(" << i << ", " << r << ")";
          }
        }
      }
    }
  }
}

TEST(MatMulInt8Test, HandComputed) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  // x [1, 3] = (1, 2, -1); w rows (127, -1, 0) scale 0.5 and (-127, 2, 3) scale 2.
  const Tensor x = arena.F32({1, 2, -1}, {1, 3});
  const Tensor w = arena.I8({127, -1, 0, -127, 2, 3}, {2, 3});
  const Tensor s = arena.F32({0.5f, 2.0f}, {2});
  const Tensor b = arena.F32({1.0f, 0.0f}, {2});
  const Tensor y = arena.Zeros(DType::kF32, {1, 2});
  backend->MatMulInt8(x, w, s, &b, y);
  // 0.5 * (127 - 2) + 1 = 63.5; 2 * (-127 + 4 - 3) = -252.
  EXPECT_EQ(arena.ReadF32(y), (std::vector<float>{63.5f, -252.0f}));
}

TEST(MatMulInt8Test, BatchInvariant) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  std::mt19937 rng(8200);
  const int64_t k = 77, m = 45, max_n = 30;
  const Tensor x = arena.F32(RandomVec(&rng, max_n * k), {max_n, k});
  const Tensor w = arena.I8(RandomInt8(&rng, m * k), {m, k});
  const Tensor s = arena.F32(RandomVec(&rng, m, 0.01f, 0.02f), {m});
  std::vector<float> alone;
  for (int64_t i = 0; i < max_n; ++i) {
    const Tensor y = arena.Zeros(DType::kF32, {1, m});
    backend->MatMulInt8(x.Rows(i, 1), w, s, nullptr, y);
    const std::vector<float> r = arena.ReadF32(y);
    alone.insert(alone.end(), r.begin(), r.end());
  }
  for (int64_t n : {2, 3, 5, 17, 30}) {
    const Tensor y = arena.Zeros(DType::kF32, {n, m});
    backend->MatMulInt8(x.Rows(0, n), w, s, nullptr, y);
    const std::vector<float> got = arena.ReadF32(y);
    EXPECT_EQ(std::memcmp(got.data(), alone.data(), n * m * sizeof(float)), 0) << n;
  }
}

}  // namespace
}  // namespace jamba
