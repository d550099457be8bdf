#include "engine/sampling/logprobs.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace jamba {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// log_softmax([1, 2, 3, 0.5]) by hand: lse = 3 + log(1 + e^-1 + e^-2 + e^-2.5)
// = 3.4607734891568512.
constexpr double kLogSoftmax[] = {-2.460773489156851, -1.4607734891568511, -0.4607734891568512,
                                  -2.960773489156851};

TEST(LogprobsForTest, ChosenTokenIsLogSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.5f};
  for (int32_t t = 0; t < 4; ++t) {
    const TokenLogprob lp = LogprobsFor(logits, t, -1);
    EXPECT_EQ(lp.token, t);
    EXPECT_NEAR(lp.logprob, kLogSoftmax[t], 1e-6);
    EXPECT_TRUE(lp.top.empty());
  }
}

TEST(LogprobsForTest, TopNIsSortedByLogprob) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.5f};
  const TokenLogprob lp = LogprobsFor(logits, 3, 3);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 2);
  EXPECT_EQ(lp.top[1].first, 1);
  EXPECT_EQ(lp.top[2].first, 0);
  EXPECT_NEAR(lp.top[0].second, kLogSoftmax[2], 1e-6);
  EXPECT_NEAR(lp.top[1].second, kLogSoftmax[1], 1e-6);
  EXPECT_NEAR(lp.top[2].second, kLogSoftmax[0], 1e-6);
  EXPECT_NEAR(lp.logprob, kLogSoftmax[3], 1e-6);
}

TEST(LogprobsForTest, TopNZeroIsEmptyAndLargeIsClamped) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.5f};
  EXPECT_TRUE(LogprobsFor(logits, 0, 0).top.empty());
  const TokenLogprob lp = LogprobsFor(logits, 0, 20);
  ASSERT_EQ(lp.top.size(), 4u);
  EXPECT_EQ(lp.top[3].first, 3);
}

TEST(LogprobsForTest, TiesAreOrderedById) {
  // Three equal logits: each has logprob log(1/3).
  const std::vector<float> logits = {0.0f, 5.0f, 5.0f, 5.0f};
  const TokenLogprob lp = LogprobsFor(logits, 0, 2);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 2);
  // log(1 / (3 + e^-5)) and log(e^-5 / (3 + e^-5)).
  const double denom = 3.0 + std::exp(-5.0);
  EXPECT_NEAR(lp.top[0].second, std::log(1.0 / denom), 1e-6);
  EXPECT_NEAR(lp.logprob, std::log(std::exp(-5.0) / denom), 1e-6);
}

TEST(LogprobsForTest, NegativeInfinityAndNan) {
  // log_softmax([0, -inf, 1]) = [-1.3132616875182228, -inf, -0.31326168751822286]
  const std::vector<float> logits = {0.0f, -kInf, 1.0f};
  EXPECT_NEAR(LogprobsFor(logits, 0, 0).logprob, -1.3132616875182228, 1e-6);
  EXPECT_EQ(LogprobsFor(logits, 1, 0).logprob, -kInf);
  const std::vector<float> with_nan = {0.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f};
  const TokenLogprob lp = LogprobsFor(with_nan, 1, 3);
  EXPECT_EQ(lp.logprob, -kInf);
  EXPECT_NEAR(LogprobsFor(with_nan, 2, 0).logprob, -0.31326168751822286, 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[2].first, 1);  // NaN ranks last
}

TEST(LogprobsForTest, SingleTokenVocabulary) {
  const std::vector<float> logits = {-3.0f};
  const TokenLogprob lp = LogprobsFor(logits, 0, 1);
  EXPECT_EQ(lp.logprob, 0.0f);
  ASSERT_EQ(lp.top.size(), 1u);
  EXPECT_EQ(lp.top[0].second, 0.0f);
}

TEST(LogprobsForTest, LargeLogitsDoNotOverflow) {
  // log_softmax is shift invariant: [1001, 1002, 1003, 1000.5] gives the values above.
  const std::vector<float> logits = {1001.0f, 1002.0f, 1003.0f, 1000.5f};
  for (int32_t t = 0; t < 4; ++t) {
    EXPECT_NEAR(LogprobsFor(logits, t, 0).logprob, kLogSoftmax[t], 1e-4);
  }
}

}  // namespace
}  // namespace jamba
