// MoeRoute: p = softmax(logits) over all experts, ids = top-k of p in descending order with
// ties going to the lower expert id, weights = p (Jamba) or p / sum of the k (Mixtral).
// Hand-computed cases and a double-precision reference.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::RandomVec;

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

class MoeRouteTest : public ::testing::Test {
 protected:
  Routed Route(const std::vector<float>& logits, int64_t n, int64_t e, int k, bool renorm) {
    Tensor ids = arena_.I32(std::vector<int32_t>(n * k, -7), {n, k});
    Tensor w = arena_.Filled({n, k}, kernel_test::kSentinel);
    backend_->MoeRoute(arena_.F32(logits, {n, e}), k, renorm, ids, w);
    return {arena_.ReadI32(ids), arena_.ReadF32(w)};
  }

  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
};

TEST_F(MoeRouteTest, HandComputedTop2) {
  // exp(logits) = [1, 2, 3, 1] -> p = [1, 2, 3, 1] / 7.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), 0.0f};
  Routed raw = Route(logits, 1, 4, 2, false);
  EXPECT_EQ(raw.ids, (std::vector<int32_t>{2, 1}));
  EXPECT_NEAR(raw.weights[0], 3.0 / 7.0, 1e-7);
  EXPECT_NEAR(raw.weights[1], 2.0 / 7.0, 1e-7);
  Routed norm = Route(logits, 1, 4, 2, true);
  EXPECT_EQ(norm.ids, (std::vector<int32_t>{2, 1}));
  EXPECT_NEAR(norm.weights[0], 0.6, 1e-7);
  EXPECT_NEAR(norm.weights[1], 0.4, 1e-7);
}

TEST_F(MoeRouteTest, TiesGoToTheLowerExpertId) {
  // All equal: experts 0 and 1, each 1/4 (raw) or 1/2 (renormalised).
  Routed all = Route({1, 1, 1, 1}, 1, 4, 2, false);
  EXPECT_EQ(all.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(all.weights[0], 0.25, 1e-7);
  EXPECT_NEAR(all.weights[1], 0.25, 1e-7);
  Routed all_norm = Route({1, 1, 1, 1}, 1, 4, 2, true);
  EXPECT_EQ(all_norm.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(all_norm.weights[0], 0.5, 1e-7);
  EXPECT_NEAR(all_norm.weights[1], 0.5, 1e-7);
  // A tie for first place between experts 3 and 1 (listed out of order).
  EXPECT_EQ(Route({0, 2, 1, 2}, 1, 4, 2, false).ids, (std::vector<int32_t>{1, 3}));
  // A tie for second place among three experts: the lowest of them wins.
  EXPECT_EQ(Route({3, 5, 3, 3, -1}, 1, 5, 2, false).ids, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(Route({-1, 5, 0, 3, 3}, 1, 5, 2, true).ids, (std::vector<int32_t>{1, 3}));
}

TEST_F(MoeRouteTest, KEqualsOneAndKEqualsE) {
  Routed one = Route({0.5f, -1, 2, 2}, 1, 4, 1, true);
  EXPECT_EQ(one.ids, (std::vector<int32_t>{2}));
  EXPECT_NEAR(one.weights[0], 1.0, 1e-7);  // renormalised over itself
  // k = E: all experts in descending order; raw weights sum to 1.
  Routed all = Route({0.1f, 0.3f, -0.2f}, 1, 3, 3, false);
  EXPECT_EQ(all.ids, (std::vector<int32_t>{1, 0, 2}));
  EXPECT_NEAR(all.weights[0] + all.weights[1] + all.weights[2], 1.0, 1e-6);
}

// Large logits must not overflow (softmax is shift invariant).
TEST_F(MoeRouteTest, LargeLogitsAreStable) {
  Routed r = Route({1000, 999, -1000, 998}, 1, 4, 2, false);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1}));
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(r.weights[0], 1 / z, 1e-6);
  EXPECT_NEAR(r.weights[1], std::exp(-1.0) / z, 1e-6);
}

TEST_F(MoeRouteTest, RandomAgainstDoubleReference) {
  std::mt19937 rng(7);
  for (int64_t e : {2, 8, 16}) {
    for (int k : {1, 2, 3}) {
      if (k > e) continue;
      const int64_t n = 9;
      const std::vector<float> logits = RandomVec(&rng, n * e, -4.0f, 4.0f);
      for (bool renorm : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "E=" << e << " k=" << k << " renorm=" << renorm);
        Routed r = Route(logits, n, e, k, renorm);
        for (int64_t i = 0; i < n; ++i) {
          std::vector<double> p(e);
          double mx = -INFINITY, sum = 0;
          for (int64_t j = 0; j < e; ++j) mx = std::max(mx, double{logits[i * e + j]});
          for (int64_t j = 0; j < e; ++j) sum += p[j] = std::exp(logits[i * e + j] - mx);
          for (double& v : p) v /= sum;
          std::vector<int32_t> order(e);
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](int32_t a, int32_t b) { return p[a] > p[b]; });
          double top = 0;
          for (int j = 0; j < k; ++j) top += p[order[j]];
          for (int j = 0; j < k; ++j) {
            EXPECT_EQ(r.ids[i * k + j], order[j]) << "row " << i << " rank " << j;
            const double want = renorm ? p[order[j]] / top : p[order[j]];
            // f32 softmax: E-term sum, exp, divisions; renormalisation a k-term sum more.
            const double tol = (e + k + 4) * FLT_EPSILON * want;
            EXPECT_NEAR(r.weights[i * k + j], want, tol) << "row " << i << " rank " << j;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace jamba

namespace jamba {
namespace {

// MoeGroup: a stable counting sort of the (token, expert) slots by expert.
class MoeGroupTest : public ::testing::Test {
 protected:
  struct Grouped {
    std::vector<int32_t> token, counts;
    std::vector<float> scale;
  };
  Grouped Group(const std::vector<int32_t>& ids, const std::vector<float>& w, int64_t n, int64_t k,
                int64_t e) {
    Tensor token = arena_.I32(std::vector<int32_t>(n * k, -7), {n * k});
    Tensor scale = arena_.Filled({n * k}, kernel_test::kSentinel);
    Tensor counts = arena_.I32(std::vector<int32_t>(e, -7), {e});
    backend_->MoeGroup(arena_.I32(ids, {n, k}), arena_.F32(w, {n, k}), token, scale, counts);
    return {arena_.ReadI32(token), arena_.ReadI32(counts), arena_.ReadF32(scale)};
  }
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
};

TEST_F(MoeGroupTest, HandComputed) {
  // 3 tokens, top-2 of 4 experts: t0 -> (2, 0), t1 -> (0, 3), t2 -> (2, 3).
  const Grouped g = Group({2, 0, 0, 3, 2, 3}, {0.5f, 0.25f, 0.125f, 1.0f, 2.0f, 4.0f}, 3, 2, 4);
  EXPECT_EQ(g.counts, (std::vector<int32_t>{2, 0, 2, 2}));
  // Expert 0: t0 (0.25), t1 (0.125); expert 2: t0 (0.5), t2 (2); expert 3: t1 (1), t2 (4).
  EXPECT_EQ(g.token, (std::vector<int32_t>{0, 1, 0, 2, 1, 2}));
  EXPECT_EQ(g.scale, (std::vector<float>{0.25f, 0.125f, 0.5f, 2.0f, 1.0f, 4.0f}));
}

TEST_F(MoeGroupTest, RandomRoutingsArePermutationsInExpertThenTokenOrder) {
  std::mt19937 rng(77);
  for (int64_t n : {1, 7, 300, 2500}) {
    const int64_t k = 2, e = 16;
    std::vector<int32_t> ids(n * k);
    std::uniform_int_distribution<int32_t> pick(0, e - 1);
    for (int64_t t = 0; t < n; ++t) {
      ids[t * k] = pick(rng);
      do ids[t * k + 1] = pick(rng);
      while (ids[t * k + 1] == ids[t * k]);
    }
    std::vector<float> w(n * k);
    std::iota(w.begin(), w.end(), 0.0f);  // the weight names its slot: t * k + j
    const Grouped g = Group(ids, w, n, k, e);
    int64_t at = 0;
    for (int64_t x = 0; x < e; ++x) {
      int64_t expected = 0;
      for (int32_t id : ids) expected += id == x;
      ASSERT_EQ(g.counts[x], expected);
      for (int64_t i = 0; i < expected; ++i, ++at) {
        const int64_t slot = static_cast<int64_t>(g.scale[at]);
        EXPECT_EQ(ids[slot], x);
        EXPECT_EQ(g.token[at], slot / k);
        if (i > 0) {
          EXPECT_GT(g.token[at], g.token[at - 1]);  // ascending tokens
        }
      }
    }
    EXPECT_EQ(at, n * k);
  }
}

}  // namespace
}  // namespace jamba
