// MatMulGrouped on the CPU backend: each expert's rows get that expert's product, bit for bit
// what one MatMul / MatMulInt8 per expert gives (so the engine's grouped decode path and its
// per-expert prefill path agree), hand-computed values, experts not held leave their rows
// untouched, empty groups, a strided output view.
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
using kernel_test::RandomVec;

constexpr float kSentinel = -777.0f;

TEST(MatMulGroupedTest, HandComputed) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  // Three rows of x [3, 2]; expert 0 owns row 0, expert 1 none, expert 2 rows 1-2.
  const Tensor x = arena.F32({1, 2, 3, 4, -1, 0.5f}, {3, 2});
  const Tensor w0 = arena.F32({1, 1, 2, 0}, {2, 2});   // y = (x0 + x1, 2 x0)
  const Tensor w1 = arena.F32({9, 9, 9, 9}, {2, 2});   // never used: empty group
  const Tensor w2 = arena.F32({0, 1, -1, 3}, {2, 2});  // y = (x1, 3 x1 - x0)
  const Tensor counts = arena.I32({1, 0, 2}, {3});
  const Tensor y = arena.Filled({3, 2}, kSentinel);
  const std::vector<Tensor> w = {w0, w1, w2};
  backend->MatMulGrouped(x, w, {}, counts, y);
  EXPECT_EQ(arena.ReadF32(y), (std::vector<float>{3, 2, 4, 9, 0.5f, 2.5f}));
}

TEST(MatMulGroupedTest, ExpertsNotHeldLeaveTheirRowsUntouched) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  DeviceArena arena(backend.get());
  const Tensor x = arena.F32({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor w1 = arena.F32({1, 0}, {1, 2});  // y = x0
  const Tensor counts = arena.I32({2, 1}, {2});
  const Tensor y = arena.Filled({3, 1}, kSentinel);
  const std::vector<Tensor> w = {Tensor(), w1};
  backend->MatMulGrouped(x, w, {}, counts, y);
  EXPECT_EQ(arena.ReadF32(y), (std::vector<float>{kSentinel, kSentinel, 5}));
}

// Random groups (some empty, one larger than a decode batch) of f32, bf16 and int8 experts,
// into a column view of a wider output: equal to one product per expert, bit for bit.
TEST(MatMulGroupedTest, EqualsOneProductPerExpert) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  std::mt19937 rng(31);
  const int64_t e_count = 6, m = 24, k = 40;
  const std::vector<int32_t> sizes = {3, 0, 11, 1, 0, 5};
  int64_t rows = 0;
  for (int32_t c : sizes) rows += c;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI8}) {
    SCOPED_TRACE(DTypeName(dtype));
    DeviceArena arena(backend.get());
    const Tensor x = arena.F32(RandomVec(&rng, rows * k), {rows, k});
    std::vector<Tensor> w, scale;
    for (int64_t e = 0; e < e_count; ++e) {
      const std::vector<float> values = RandomVec(&rng, m * k);
      if (dtype == DType::kF32) {
        w.push_back(arena.F32(values, {m, k}));
      } else if (dtype == DType::kBF16) {
        std::vector<uint16_t> bits;
        for (float v : values) bits.push_back(kernel_test::TruncToBf16(v));
        w.push_back(arena.Bf16(bits, {m, k}));
      } else {
        std::vector<int8_t> q;
        for (float v : values) q.push_back(static_cast<int8_t>(v * 127.0f));
        w.push_back(arena.I8(q, {m, k}));
        scale.push_back(arena.F32(RandomVec(&rng, m, 0.001f, 0.05f), {m}));
      }
    }
    const Tensor counts = arena.I32(sizes, {e_count});
    const Tensor wide = arena.Filled({rows, m + 7}, kSentinel);
    const Tensor y = wide.Cols(3, m);
    backend->MatMulGrouped(x, w, scale, counts, y);

    std::vector<float> want(rows * (m + 7), kSentinel);
    int64_t offset = 0;
    for (int64_t e = 0; e < e_count; ++e) {
      const int64_t n = sizes[e];
      if (n == 0) continue;
      const Tensor ye = arena.Zeros(DType::kF32, {n, m});
      if (dtype == DType::kI8) {
        backend->MatMulInt8(x.Rows(offset, n), w[e], scale[e], nullptr, ye);
      } else {
        backend->MatMul(x.Rows(offset, n), w[e], nullptr, ye);
      }
      const std::vector<float> got = arena.ReadF32(ye);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < m; ++j) want[(offset + i) * (m + 7) + 3 + j] = got[i * m + j];
      }
      offset += n;
    }
    EXPECT_EQ(arena.ReadF32(wide), want);
  }
}

}  // namespace
}  // namespace jamba
