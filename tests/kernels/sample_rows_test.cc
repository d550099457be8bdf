// SampleRows: the CPU backend on hand-computed rows, and the GPU kernel's algorithm
// (kernels/cuda/sample_rows_algo.h, run here on its host model of a thread block) against the
// CPU reference on random rows with planted ties, NaN, +-inf and signed zeros. The sampler's
// own distribution tests (tests/engine/sampling/sampler_test.cc) cover steps 2-7 through the
// same RowSampler.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/row_sampler.h"
#include "kernels/cuda/sample_rows_algo.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

constexpr float kInf = INFINITY;

RowSampling Greedy() { return RowSampling{}; }

RowSampling Sampled(double u, float temperature = 1.0f, int32_t top_k = 0, float top_p = 1.0f,
                    float min_p = 0.0f) {
  return RowSampling{u, temperature, top_k, top_p, min_p};
}

std::vector<int32_t> RunCpu(const std::vector<float>& x, int64_t n, int64_t v,
                            const std::vector<RowSampling>& params) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  kernel_test::DeviceArena arena(backend.get());
  const Tensor out = arena.I32(std::vector<int32_t>(n, -7), {n});
  backend->SampleRows(arena.F32(x, {n, v}), params, out);
  return arena.ReadI32(out);
}

// ---- The CPU backend -----------------------------------------------------------------------

// The host sampler's greedy rule: NaN = -inf, ties to the lower index, all -inf -> 0.
TEST(SampleRowsTest, GreedyRule) {
  const float nan = NAN;
  const std::vector<float> x = {
      1,     3,     2,     3,     // tie: the lower index, 1
      nan,   -1,    nan,   -2,    // NaN never wins: 1
      -kInf, -kInf, -kInf, nan,   // nothing finite: 0
      -kInf, kInf,  5,     kInf,  // +inf, tied: 1
  };
  EXPECT_EQ(RunCpu(x, 4, 4, std::vector<RowSampling>(4, Greedy())),
            (std::vector<int32_t>{1, 1, 0, 1}));
}

TEST(SampleRowsTest, GreedyOnRandomStridedRows) {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  kernel_test::DeviceArena arena(backend.get());
  std::mt19937 rng(91);
  const int64_t n = 9, v = 1000;
  const std::vector<float> x = kernel_test::RandomVec(&rng, n * v);
  auto s = kernel_test::MakeStrided(&arena, x, n, v, v + 3, 1);
  const Tensor out = arena.I32(std::vector<int32_t>(n, -7), {n});
  backend->SampleRows(s.view, std::vector<RowSampling>(n, Greedy()), out);
  const std::vector<int32_t> got = arena.ReadI32(out);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(got[i],
              std::max_element(x.begin() + i * v, x.begin() + (i + 1) * v) - (x.begin() + i * v));
  }
}

// Logits log(1), log(2), log(4), log(1): probabilities 1/8, 2/8, 4/8, 1/8. Without top-p the
// draw walks ids in order: cumulative 1/8, 3/8, 7/8, 1.
TEST(SampleRowsTest, DrawWalksIdsInOrderWithoutTopP) {
  const std::vector<float> x = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  const std::vector<double> us = {0.0, 0.124, 0.126, 0.374, 0.376, 0.874, 0.876, 0.999};
  const std::vector<int32_t> want = {0, 0, 1, 1, 2, 2, 3, 3};
  for (size_t i = 0; i < us.size(); ++i) {
    EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(us[i])})[0], want[i]) << "u " << us[i];
  }
}

// With top-p the survivors are ranked: p = 0.6 keeps {2 (0.5), 1 (0.25)}, renormalised to
// 2/3, 1/3, drawn in rank order.
TEST(SampleRowsTest, TopPDrawsInRankOrder) {
  const std::vector<float> x = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(0.0, 1.0f, 0, 0.6f)})[0], 2);
  EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(0.66, 1.0f, 0, 0.6f)})[0], 2);
  EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(0.67, 1.0f, 0, 0.6f)})[0], 1);
  EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(0.99, 1.0f, 0, 0.6f)})[0], 1);
}

// Top-k 2 of {1, 3, 2, 3}: the two 3s; a tie at the k-th place goes to the lower id, so top-k 1
// keeps only id 1. Min-p 0.6 against weights 1, 2, 4, 1 (relative 0.25, 0.5, 1, 0.25) keeps
// only id 2.
TEST(SampleRowsTest, TopKTiesAndMinP) {
  const std::vector<float> x = {1, 3, 2, 3};
  for (double u : {0.0, 0.3, 0.7, 0.99}) {
    EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(u, 1.0f, 1)})[0], 1);
    EXPECT_EQ(RunCpu(x, 1, 4, {Sampled(u, 1.0f, 2)})[0], u < 0.5 ? 1 : 3);
  }
  const std::vector<float> y = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  for (double u : {0.0, 0.5, 0.99})
    EXPECT_EQ(RunCpu(y, 1, 4, {Sampled(u, 1.0f, 0, 1.0f, 0.6f)})[0], 2);
}

// Rows of one batch are independent: each uses its own parameters.
TEST(SampleRowsTest, RowsUseTheirOwnParameters) {
  const std::vector<float> x = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f,   // row 0
                                5.0f, 1.0f,           1.0f,           1.0f};  // row 1
  EXPECT_EQ(RunCpu(x, 2, 4, {Sampled(0.999), Greedy()}), (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(RunCpu(x, 2, 4, {Greedy(), Sampled(0.999, 1e-3f)}), (std::vector<int32_t>{2, 0}));
}

// ---- The GPU kernel's algorithm, on the host model of its block ----------------------------

int32_t Reference(const std::vector<float>& row, const RowSampling& p) {
  RowSampler sampler;
  sampler.Process(row, p);
  return sampler.Draw(p.uniform);
}

int32_t Algorithm(const std::vector<float>& row, const RowSampling& p, int threads) {
  sample_algo::HostBlock block(static_cast<int32_t>(row.size()), threads);
  return sample_algo::SampleRow(block, row.data(), p);
}

// Rows whose values come from a small set, so ties (at the top-k and top-p cut points and in
// the draw), -inf, NaN, +inf and both zeros are common.
std::vector<float> TieHeavyRow(std::mt19937* rng, int64_t v, bool with_pos_inf) {
  const float nan = NAN;
  std::vector<float> pool = {-kInf, nan, -0.0f, 0.0f, 0.5f, 0.5f, 1.0f, 2.0f, -3.0f, 1.5f};
  if (with_pos_inf) pool.push_back(kInf);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::vector<float> row(v);
  for (float& x : row) x = pool[pick(*rng)];
  return row;
}

RowSampling RandomParams(std::mt19937* rng, int64_t v) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  RowSampling p;
  p.uniform = unit(*rng);
  const double r = unit(*rng);
  p.temperature = r < 0.1 ? 0.0f : r < 0.2 ? 1e-3f : static_cast<float>(0.2 + 2.0 * unit(*rng));
  const double k = unit(*rng);
  p.top_k = k < 0.4   ? 0
            : k < 0.7 ? 1 + static_cast<int32_t>(unit(*rng) * 20)
                      : static_cast<int32_t>(unit(*rng) * static_cast<double>(v + 5));
  p.top_p = unit(*rng) < 0.5 ? 1.0f : static_cast<float>(0.05 + 0.95 * unit(*rng));
  p.min_p = unit(*rng) < 0.6 ? 0.0f : static_cast<float>(0.3 * unit(*rng));
  return p;
}

std::string Describe(const RowSampling& p) {
  return "u=" + std::to_string(p.uniform) + " T=" + std::to_string(p.temperature) +
         " k=" + std::to_string(p.top_k) + " p=" + std::to_string(p.top_p) +
         " min_p=" + std::to_string(p.min_p);
}

TEST(SampleRowsAlgorithmTest, MatchesTheReferenceOnRandomRows) {
  std::mt19937 rng(2026);
  int checked = 0;
  for (int64_t v : {1, 2, 7, 31, 100, 1000, 4099}) {
    for (int trial = 0; trial < 60; ++trial) {
      const std::vector<float> row = kernel_test::RandomVec(&rng, v, -8.0f, 8.0f);
      const RowSampling p = RandomParams(&rng, v);
      const int threads = trial % 3 == 0 ? 32 : sample_algo::kSampleThreads;
      ASSERT_EQ(Algorithm(row, p, threads), Reference(row, p))
          << "V=" << v << " threads=" << threads << " " << Describe(p);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 7 * 60);
}

TEST(SampleRowsAlgorithmTest, MatchesTheReferenceWithTiesAndSpecialValues) {
  std::mt19937 rng(7);
  for (int64_t v : {1, 3, 40, 300, 2500}) {
    for (int trial = 0; trial < 80; ++trial) {
      const std::vector<float> row = TieHeavyRow(&rng, v, trial % 4 == 0);
      const RowSampling p = RandomParams(&rng, v);
      const int threads = trial % 2 == 0 ? 64 : sample_algo::kSampleThreads;
      ASSERT_EQ(Algorithm(row, p, threads), Reference(row, p))
          << "V=" << v << " threads=" << threads << " " << Describe(p);
    }
  }
}

// Draws on exact boundaries of small-integer weights (ties of equal logits at T = 1): the
// block's sums are exact there, so it must agree with the reference even at u = k / n.
TEST(SampleRowsAlgorithmTest, ExactBoundaries) {
  const std::vector<float> row(8, 0.25f);
  for (int k = 0; k < 8; ++k) {
    for (float top_p : {1.0f, 0.5f, 0.25f}) {
      const RowSampling p = Sampled(k / 8.0, 1.0f, 0, top_p);
      EXPECT_EQ(Algorithm(row, p, 32), Reference(row, p)) << Describe(p);
      EXPECT_EQ(Algorithm(row, p, sample_algo::kSampleThreads), Reference(row, p)) << Describe(p);
    }
  }
}

// The 16-way search finds the last key where a monotone predicate holds, over full and narrow
// ranges, in at most 8 steps for 32-bit keys.
TEST(SampleRowsAlgorithmTest, SearchFindsTheLastTrueKey) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> any;
  for (int trial = 0; trial < 2000; ++trial) {
    uint32_t lo = any(rng), hi = any(rng);
    if (trial % 3 == 0) hi = lo + static_cast<uint32_t>(trial % 40);  // narrow ranges
    if (hi < lo) std::swap(lo, hi);
    const uint32_t last =
        lo + static_cast<uint32_t>(std::uniform_int_distribution<uint64_t>(0, hi - lo)(rng));
    int steps = 0;
    const uint32_t got =
        sample_algo::LargestKeyWhere(lo, hi, [&](const uint32_t* t, int n, bool* ok) {
          ++steps;
          for (int j = 0; j < n; ++j) {
            ASSERT_TRUE(t[j] > lo && t[j] <= hi && (j == 0 || t[j] > t[j - 1]));
            ok[j] = t[j] <= last;
          }
        });
    ASSERT_EQ(got, last) << "lo " << lo << " hi " << hi;
    EXPECT_LE(steps, 8);
  }
}

TEST(SampleRowsAlgorithmTest, OrderedKeys) {
  using sample_algo::Key;
  const std::vector<float> ascending = {-kInf,  -1e30f, -1.0f, -1e-40f, 0.0f,
                                        1e-40f, 1.0f,   1e30f, kInf};
  for (size_t i = 1; i < ascending.size(); ++i) {
    EXPECT_LT(Key(ascending[i - 1]), Key(ascending[i])) << ascending[i];
  }
  EXPECT_EQ(Key(-0.0f), Key(0.0f));
  EXPECT_EQ(Key(NAN), Key(-kInf));
  for (float f : ascending) EXPECT_EQ(sample_algo::KeyValue(Key(f)), f);
}

}  // namespace
}  // namespace jamba
