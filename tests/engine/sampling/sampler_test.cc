#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

// softmax(values / t), computed independently of the sampler.
std::vector<double> Softmax(const std::vector<double>& values, double t = 1.0) {
  double max = -std::numeric_limits<double>::infinity();
  for (double v : values) max = std::max(max, v);
  std::vector<double> out;
  double sum = 0.0;
  for (double v : values) {
    out.push_back(std::exp((v - max) / t));
    sum += out.back();
  }
  for (double& p : out) p /= sum;
  return out;
}

std::vector<float> LogsOf(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

std::map<int32_t, double> AsMap(const std::vector<TokenProb>& dist) {
  std::map<int32_t, double> out;
  for (const TokenProb& tp : dist) out[tp.token] = tp.prob;
  return out;
}

std::set<int32_t> Support(const std::vector<TokenProb>& dist) {
  std::set<int32_t> out;
  for (const TokenProb& tp : dist) out.insert(tp.token);
  return out;
}

// Pearson chi-square of `counts` (n draws) against `probs`.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs) {
  const double n = std::accumulate(counts.begin(), counts.end(), 0.0);
  double chi2 = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = n * probs[i];
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

std::vector<int> Draw(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits, {}).token];
  return counts;
}

// ---- Greedy ------------------------------------------------------------------------------

TEST(SamplerGreedyTest, PicksArgmax) {
  Sampler sampler(Greedy());
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.1f, 2.5f, -1.0f, 2.4f}, {}).token, 1);
  EXPECT_EQ(sampler.Sample(std::vector<float>{-5.0f, -4.0f, -3.0f}, {}).token, 2);
}

TEST(SamplerGreedyTest, TiesGoToLowestId) {
  Sampler sampler(Greedy());
  EXPECT_EQ(sampler.Sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}, {}).token, 1);
  EXPECT_EQ(sampler.Sample(std::vector<float>(1000, 0.25f), {}).token, 0);
}

TEST(SamplerGreedyTest, IgnoresTopKTopPAndMinP) {
  SamplingParams p = Greedy();
  p.top_k = 1;
  p.top_p = 0.01f;
  p.min_p = 0.9f;
  Sampler sampler(p);
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, 1.0f, 0.5f}, {}).token, 1);
  const auto dist = sampler.Distribution(std::vector<float>{0.0f, 1.0f, 0.5f}, {});
  ASSERT_EQ(dist.size(), 1u);
  EXPECT_EQ(dist[0].token, 1);
  EXPECT_EQ(dist[0].prob, 1.0);
}

TEST(SamplerGreedyTest, SkipsNanAndHandlesInfinities) {
  Sampler sampler(Greedy());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(sampler.Sample(std::vector<float>{nan, 1.0f, nan}, {}).token, 1);
  EXPECT_EQ(sampler.Sample(std::vector<float>{-kInf, -kInf, -2.0f}, {}).token, 2);
  EXPECT_EQ(sampler.Sample(std::vector<float>{-kInf, -kInf}, {}).token, 0);
}

// ---- Repetition penalty ------------------------------------------------------------------

TEST(SamplerRepetitionPenaltyTest, DividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = Seeded(1);
  p.repetition_penalty = 2.0f;
  Sampler sampler(p);
  // Ids 0 and 1 are in the context (0 twice): 2.0 -> 1.0 and -1.0 -> -2.0; 2 and 3 unchanged.
  auto dist = AsMap(sampler.Distribution(std::vector<float>{2.0f, -1.0f, 0.5f, 3.0f},
                                         std::vector<int32_t>{0, 1, 0}));
  const std::vector<double> expected = Softmax({1.0, -2.0, 0.5, 3.0});
  ASSERT_EQ(dist.size(), 4u);
  for (int32_t t = 0; t < 4; ++t) EXPECT_NEAR(dist[t], expected[t], 1e-12) << t;
}

TEST(SamplerRepetitionPenaltyTest, ChangesTheGreedyChoice) {
  SamplingParams p = Greedy();
  p.repetition_penalty = 2.0f;
  Sampler sampler(p);
  // Positive: 3.0 / 2 = 1.5 < 2.0.
  EXPECT_EQ(sampler.Sample(std::vector<float>{3.0f, 2.0f}, std::vector<int32_t>{0}).token, 1);
  // Negative: -0.5 * 2 = -1.0 < -0.8.
  EXPECT_EQ(sampler.Sample(std::vector<float>{-0.5f, -0.8f}, std::vector<int32_t>{0}).token, 1);
  // Without the token in the context nothing changes.
  EXPECT_EQ(sampler.Sample(std::vector<float>{3.0f, 2.0f}, std::vector<int32_t>{}).token, 0);
}

TEST(SamplerRepetitionPenaltyTest, RepeatedIdsArePenalisedOnce) {
  SamplingParams p = Greedy();
  p.repetition_penalty = 2.0f;
  Sampler sampler(p);
  // Once: 3.0 / 2 = 1.5 > 1.0 (twice would give 0.75 < 1.0).
  EXPECT_EQ(sampler.Sample(std::vector<float>{3.0f, 1.0f}, std::vector<int32_t>{0, 0, 0}).token, 0);
  // And the scratch marks are cleared between calls: the same call again gives the same.
  EXPECT_EQ(sampler.Sample(std::vector<float>{3.0f, 1.0f}, std::vector<int32_t>{0, 0, 0}).token, 0);
}

TEST(SamplerRepetitionPenaltyTest, OutOfRangeContextIdsAreIgnored) {
  SamplingParams p = Greedy();
  p.repetition_penalty = 2.0f;
  Sampler sampler(p);
  EXPECT_EQ(sampler.Sample(std::vector<float>{3.0f, 2.0f}, std::vector<int32_t>{-1, 2, 1000}).token,
            0);
}

// ---- Temperature -------------------------------------------------------------------------

TEST(SamplerTemperatureTest, DistributionIsSoftmaxOverTemperature) {
  const std::vector<double> logits = {1.0, 0.5, 0.0, -1.0};
  const std::vector<float> logits_f(logits.begin(), logits.end());
  for (float t : {0.25f, 0.5f, 1.0f, 2.0f, 10.0f}) {
    SamplingParams p = Seeded(3);
    p.temperature = t;
    Sampler sampler(p);
    auto dist = AsMap(sampler.Distribution(logits_f, {}));
    const std::vector<double> expected = Softmax(logits, t);
    ASSERT_EQ(dist.size(), 4u);
    for (int32_t i = 0; i < 4; ++i) EXPECT_NEAR(dist[i], expected[i], 1e-12) << t;
  }
}

TEST(SamplerTemperatureTest, EmpiricalFrequenciesMatchSoftmax) {
  const std::vector<double> logits = {1.0, 0.5, 0.0, -1.0};
  const std::vector<float> logits_f(logits.begin(), logits.end());
  const int n = 40000;
  // Chi-square with 3 degrees of freedom: 16.27 is the 0.999 quantile.
  for (float t : {0.5f, 1.0f, 2.0f}) {
    SamplingParams p = Seeded(12345);
    p.temperature = t;
    Sampler sampler(p);
    const std::vector<int> counts = Draw(sampler, logits_f, n);
    EXPECT_LT(ChiSquare(counts, Softmax(logits, t)), 16.27) << "T=" << t;
    // A different temperature's distribution is clearly rejected.
    EXPECT_GT(ChiSquare(counts, Softmax(logits, t * 2.0)), 100.0) << "T=" << t;
  }
}

TEST(SamplerTemperatureTest, TinyTemperatureDoesNotOverflow) {
  SamplingParams p = Seeded(5);
  p.temperature = 1e-30f;
  Sampler sampler(p);
  const auto dist = sampler.Distribution(std::vector<float>{1000.0f, 1000.5f, -1000.0f}, {});
  ASSERT_EQ(dist.size(), 1u);
  EXPECT_EQ(dist[0].token, 1);
  EXPECT_EQ(sampler.Sample(std::vector<float>{1000.0f, 1000.5f, -1000.0f}, {}).token, 1);
}

TEST(SamplerTemperatureTest, AllEqualLogitsAreUniform) {
  Sampler sampler(Seeded(9));
  const std::vector<float> logits(5, 1.5f);
  const auto dist = sampler.Distribution(logits, {});
  ASSERT_EQ(dist.size(), 5u);
  for (const TokenProb& tp : dist) EXPECT_NEAR(tp.prob, 0.2, 1e-15);
  const std::vector<int> counts = Draw(sampler, logits, 20000);
  // 4 degrees of freedom: 18.47 is the 0.999 quantile.
  EXPECT_LT(ChiSquare(counts, std::vector<double>(5, 0.2)), 18.47);
}

TEST(SamplerTemperatureTest, VocabularyOfOne) {
  Sampler sampler(Seeded(1));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sampler.Sample(std::vector<float>{-7.0f}, {}).token, 0);
}

TEST(SamplerTemperatureTest, NegativeInfinityIsNeverDrawn) {
  Sampler sampler(Seeded(2));
  const std::vector<float> logits = {-kInf, 0.0f, -kInf, 0.0f};
  EXPECT_THAT(Support(sampler.Distribution(logits, {})), ElementsAre(1, 3));
  const std::vector<int> counts = Draw(sampler, logits, 2000);
  EXPECT_EQ(counts[0] + counts[2], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);
}

TEST(SamplerTemperatureTest, AllNegativeInfinityGivesTokenZero) {
  Sampler sampler(Seeded(2));
  EXPECT_EQ(sampler.Sample(std::vector<float>{-kInf, -kInf, -kInf}, {}).token, 0);
}

TEST(SamplerTemperatureTest, PositiveInfinitySharesTheProbability) {
  Sampler sampler(Seeded(2));
  auto dist = AsMap(sampler.Distribution(std::vector<float>{0.0f, kInf, 5.0f, kInf}, {}));
  ASSERT_EQ(dist.size(), 2u);
  EXPECT_EQ(dist[1], 0.5);
  EXPECT_EQ(dist[3], 0.5);
}

// ---- Top-k -------------------------------------------------------------------------------

TEST(SamplerTopKTest, TopKOneEqualsGreedy) {
  const std::vector<float> logits = {0.3f, -0.2f, 0.31f, 0.05f, 0.29f, 0.0f};
  for (uint64_t seed = 0; seed < 50; ++seed) {
    SamplingParams p = Seeded(seed);
    p.top_k = 1;
    p.temperature = 5.0f;  // nearly flat otherwise
    Sampler sampler(p);
    EXPECT_EQ(sampler.Sample(logits, {}).token, 2);
  }
  // With a tie at the top, top-k = 1 keeps the lowest id, like greedy.
  SamplingParams p = Seeded(0);
  p.top_k = 1;
  Sampler sampler(p);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, 2.0f, 1.0f, 2.0f}, {}).token, 1);
  }
}

TEST(SamplerTopKTest, RestrictsSupportToTheKBest) {
  const std::vector<double> logits = {0.1, 0.9, 0.3, 0.8, 0.5, 0.2};
  const std::vector<float> logits_f(logits.begin(), logits.end());
  SamplingParams p = Seeded(77);
  p.top_k = 3;
  Sampler sampler(p);
  auto dist = AsMap(sampler.Distribution(logits_f, {}));
  const std::vector<double> expected = Softmax({0.9, 0.8, 0.5});  // ids 1, 3, 4
  ASSERT_EQ(dist.size(), 3u);
  EXPECT_NEAR(dist[1], expected[0], 1e-7);
  EXPECT_NEAR(dist[3], expected[1], 1e-7);
  EXPECT_NEAR(dist[4], expected[2], 1e-7);

  const std::vector<int> counts = Draw(sampler, logits_f, 20000);
  EXPECT_EQ(counts[0] + counts[2] + counts[5], 0);
  EXPECT_LT(ChiSquare({counts[1], counts[3], counts[4]}, expected), 13.82);  // 2 dof, 0.999
}

TEST(SamplerTopKTest, TiesAtTheCutGoToLowerIds) {
  SamplingParams p = Seeded(1);
  p.top_k = 2;
  Sampler sampler(p);
  EXPECT_THAT(Support(sampler.Distribution(std::vector<float>{1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, {})),
              ElementsAre(1, 2));
}

TEST(SamplerTopKTest, KLargerThanVocabularyKeepsAll) {
  SamplingParams p = Seeded(1);
  p.top_k = 100;
  Sampler sampler(p);
  EXPECT_EQ(sampler.Distribution(std::vector<float>{1.0f, 2.0f, 3.0f}, {}).size(), 3u);
}

// ---- Top-p -------------------------------------------------------------------------------

// Probabilities 0.05, 0.5, 0.15, 0.3 at ids 0..3; sorted: id1 0.5, id3 0.3, id2 0.15, id0 0.05.
const std::vector<double> kProbs = {0.05, 0.5, 0.15, 0.3};

std::vector<TokenProb> TopPDistribution(float top_p, float temperature = 1.0f, int32_t top_k = 0) {
  SamplingParams p = Seeded(4);
  p.top_p = top_p;
  p.temperature = temperature;
  p.top_k = top_k;
  Sampler sampler(p);
  return sampler.Distribution(LogsOf(kProbs), {});
}

TEST(SamplerTopPTest, KeepsSmallestSetReachingTopP) {
  EXPECT_THAT(Support(TopPDistribution(0.4f)), ElementsAre(1));            // 0.5 >= 0.4
  EXPECT_THAT(Support(TopPDistribution(0.7f)), ElementsAre(1, 3));         // 0.8 >= 0.7
  EXPECT_THAT(Support(TopPDistribution(0.85f)), ElementsAre(1, 2, 3));     // 0.95 >= 0.85
  EXPECT_THAT(Support(TopPDistribution(0.96f)), ElementsAre(0, 1, 2, 3));  // needs all
  EXPECT_THAT(Support(TopPDistribution(1.0f)), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(Support(TopPDistribution(1e-6f)), ElementsAre(1));  // never empty
}

TEST(SamplerTopPTest, RenormalisesTheKeptSet) {
  auto dist = AsMap(TopPDistribution(0.7f));
  EXPECT_NEAR(dist[1], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(dist[3], 0.3 / 0.8, 1e-6);
  dist = AsMap(TopPDistribution(0.85f));
  EXPECT_NEAR(dist[1], 0.5 / 0.95, 1e-6);
  EXPECT_NEAR(dist[3], 0.3 / 0.95, 1e-6);
  EXPECT_NEAR(dist[2], 0.15 / 0.95, 1e-6);
}

TEST(SamplerTopPTest, AppliesAfterTemperature) {
  // T = 0.5 squares the probabilities: 0.0025, 0.25, 0.0225, 0.09 (sum 0.365), so id1 has
  // 0.6849 and id1 + id3 0.9315: top_p 0.9 keeps {1, 3}, where T = 1 needs {1, 3, 2}.
  EXPECT_THAT(Support(TopPDistribution(0.9f, 0.5f)), ElementsAre(1, 3));
  EXPECT_THAT(Support(TopPDistribution(0.9f, 1.0f)), ElementsAre(1, 2, 3));
}

TEST(SamplerTopPTest, AppliesAfterTopK) {
  // top_k 2 keeps ids 1 and 3, renormalised to 0.625 / 0.375: top_p 0.6 then keeps id 1
  // alone (on the full distribution it would need 0.5 + 0.3).
  EXPECT_THAT(Support(TopPDistribution(0.6f, 1.0f, 2)), ElementsAre(1));
  EXPECT_THAT(Support(TopPDistribution(0.7f, 1.0f, 2)), ElementsAre(1, 3));
}

TEST(SamplerTopPTest, EmpiricalFrequenciesFollowTheKeptSet) {
  SamplingParams p = Seeded(2024);
  p.top_p = 0.85f;
  Sampler sampler(p);
  const std::vector<int> counts = Draw(sampler, LogsOf(kProbs), 30000);
  EXPECT_EQ(counts[0], 0);
  EXPECT_LT(ChiSquare({counts[1], counts[2], counts[3]}, {0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95}),
            13.82);
}

// ---- Min-p -------------------------------------------------------------------------------

TEST(SamplerMinPTest, KeepsTokensAboveFractionOfMax) {
  SamplingParams p = Seeded(4);
  p.min_p = 0.5f;  // threshold 0.25: ids 1 (0.5) and 3 (0.3)
  EXPECT_THAT(Support(Sampler(p).Distribution(LogsOf(kProbs), {})), ElementsAre(1, 3));
  p.min_p = 0.25f;  // threshold 0.125: adds id 2 (0.15)
  EXPECT_THAT(Support(Sampler(p).Distribution(LogsOf(kProbs), {})), ElementsAre(1, 2, 3));
  p.min_p = 0.7f;  // threshold 0.35: id 1 only
  EXPECT_THAT(Support(Sampler(p).Distribution(LogsOf(kProbs), {})), ElementsAre(1));
}

// ---- Seeds -------------------------------------------------------------------------------

std::vector<int32_t> Generate(const SamplingParams& p, int n) {
  Sampler sampler(p);
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = 0.01f * static_cast<float>(i % 7);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.Sample(logits, {}).token);
  return out;
}

TEST(SamplerSeedTest, SameSeedSameTokens) {
  EXPECT_EQ(Generate(Seeded(123), 200), Generate(Seeded(123), 200));
}

TEST(SamplerSeedTest, DifferentSeedDifferentTokens) {
  EXPECT_NE(Generate(Seeded(123), 200), Generate(Seeded(124), 200));
  EXPECT_NE(Generate(SamplingParams(), 200), Generate(SamplingParams(), 200));
}

TEST(SamplerSeedTest, DistributionDoesNotAdvanceTheRng) {
  Sampler a(Seeded(8));
  Sampler b(Seeded(8));
  const std::vector<float> logits = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  for (int i = 0; i < 20; ++i) {
    b.Distribution(logits, {});
    EXPECT_EQ(a.Sample(logits, {}).token, b.Sample(logits, {}).token);
  }
}

// ---- Logprobs ----------------------------------------------------------------------------

TEST(SamplerLogprobsTest, ReportsRawLogSoftmaxOfTheChosenToken) {
  SamplingParams p = Seeded(6);
  p.logprobs = 2;
  p.temperature = 0.3f;         // must not change the reported values
  p.repetition_penalty = 1.5f;  // nor this
  Sampler sampler(p);
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.5f};
  // log_softmax([1, 2, 3, 0.5]), see logprobs_test.cc.
  const double expected[] = {-2.460773489156851, -1.4607734891568511, -0.4607734891568512,
                             -2.960773489156851};
  for (int i = 0; i < 10; ++i) {
    const SampleResult r = sampler.Sample(logits, std::vector<int32_t>{2});
    ASSERT_TRUE(r.logprobs.has_value());
    EXPECT_EQ(r.logprobs->token, r.token);
    EXPECT_NEAR(r.logprobs->logprob, expected[r.token], 1e-6);
    ASSERT_EQ(r.logprobs->top.size(), 2u);
    EXPECT_EQ(r.logprobs->top[0].first, 2);
    EXPECT_NEAR(r.logprobs->top[0].second, expected[2], 1e-6);
    EXPECT_EQ(r.logprobs->top[1].first, 1);
    EXPECT_NEAR(r.logprobs->top[1].second, expected[1], 1e-6);
  }
}

TEST(SamplerLogprobsTest, NoneUnlessRequested) {
  Sampler sampler(Seeded(6));
  EXPECT_FALSE(sampler.Sample(std::vector<float>{1.0f, 2.0f}, {}).logprobs.has_value());
  SamplingParams p = Seeded(6);
  p.logprobs = 0;
  const SampleResult r = Sampler(p).Sample(std::vector<float>{1.0f, 2.0f}, {});
  ASSERT_TRUE(r.logprobs.has_value());
  EXPECT_TRUE(r.logprobs->top.empty());
}

// ---- Large vocabulary --------------------------------------------------------------------

std::vector<float> PseudoRandomLogits(int32_t n, uint32_t seed) {
  std::vector<float> out(n);
  uint32_t x = seed;
  for (float& v : out) {
    x = x * 1664525u + 1013904223u;                              // Numerical Recipes LCG
    v = static_cast<float>(x >> 8) / 16777216.0f * 6.0f - 3.0f;  // [-3, 3)
  }
  return out;
}

// Indices of `logits` by descending value, then ascending id (full sort).
std::vector<int32_t> FullRanking(const std::vector<float>& logits) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  return ids;
}

TEST(SamplerLargeVocabTest, TopKMatchesFullSort) {
  const int32_t vocab = 256000;
  const std::vector<float> logits = PseudoRandomLogits(vocab, 1);
  const std::vector<int32_t> ranking = FullRanking(logits);
  SamplingParams p = Seeded(1);
  p.top_k = 50;
  Sampler sampler(p);
  const std::set<int32_t> expected(ranking.begin(), ranking.begin() + 50);
  EXPECT_EQ(Support(sampler.Distribution(logits, {})), expected);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(expected.count(sampler.Sample(logits, {}).token));
}

TEST(SamplerLargeVocabTest, TopPKeepingHundredsMatchesFullSort) {
  const int32_t vocab = 256000;
  const std::vector<float> logits = PseudoRandomLogits(vocab, 2);
  const std::vector<int32_t> ranking = FullRanking(logits);
  // Reference: the shortest prefix of the full ranking with mass >= top_p.
  const float top_p = 0.01f;
  double max = logits[ranking[0]];
  double total = 0.0;
  for (float v : logits) total += std::exp(v - max);
  double cumulative = 0.0;
  size_t keep = 0;
  while (cumulative < top_p * total) cumulative += std::exp(logits[ranking[keep++]] - max);
  ASSERT_GT(keep, 300u);  // exercises the geometric growth of the partial sort
  SamplingParams p = Seeded(1);
  p.top_p = top_p;
  Sampler sampler(p);
  const std::vector<TokenProb> dist = sampler.Distribution(logits, {});
  ASSERT_EQ(dist.size(), keep);
  // Visited in rank order once top-p has ranked them.
  for (size_t i = 0; i < keep; ++i) EXPECT_EQ(dist[i].token, ranking[i]) << i;
}

}  // namespace
}  // namespace jamba
