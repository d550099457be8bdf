#include "engine/sampling/rng.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace jamba {
namespace {

// The published xoshiro256** test vector: state {1, 2, 3, 4}, first ten outputs (the same
// values the reference C implementation prints).
TEST(Xoshiro256Test, MatchesReferenceVector) {
  Xoshiro256 rng = Xoshiro256::FromState({1, 2, 3, 4});
  const uint64_t expected[] = {11520ULL,
                               0ULL,
                               1509978240ULL,
                               1215971899390074240ULL,
                               1216172134540287360ULL,
                               607988272756665600ULL,
                               16172922978634559625ULL,
                               8476171486693032832ULL,
                               10595114339597558777ULL,
                               2904607092377533576ULL};
  for (uint64_t e : expected) EXPECT_EQ(rng.NextU64(), e);
}

// SplitMix64 from state 0: the well-known first outputs.
TEST(SplitMix64Test, MatchesReferenceVector) {
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64Next(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(SplitMix64Next(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(SplitMix64Next(state), 0x06c45d188009454fULL);
}

TEST(Xoshiro256Test, SeedExpandsThroughSplitMix64) {
  uint64_t state = 42;
  const uint64_t a = SplitMix64Next(state);
  const uint64_t b = SplitMix64Next(state);
  const uint64_t c = SplitMix64Next(state);
  const uint64_t d = SplitMix64Next(state);
  Xoshiro256 seeded(42);
  Xoshiro256 manual = Xoshiro256::FromState({a, b, c, d});
  for (int i = 0; i < 16; ++i) EXPECT_EQ(seeded.NextU64(), manual.NextU64());
}

TEST(Xoshiro256Test, NextDoubleUsesTop53Bits) {
  Xoshiro256 rng = Xoshiro256::FromState({1, 2, 3, 4});
  // Outputs 11520 and 0 (above): 11520 >> 11 == 5.
  EXPECT_EQ(rng.NextDouble(), 5.0 / 9007199254740992.0);  // 5 * 2^-53
  EXPECT_EQ(rng.NextDouble(), 0.0);
  // 1509978240 >> 11 == 737294.
  EXPECT_EQ(rng.NextDouble(), 737294.0 / 9007199254740992.0);
}

TEST(Xoshiro256Test, DoublesAreUniformInUnitInterval) {
  Xoshiro256 rng(7);
  const int n = 100000;
  double sum = 0.0;
  int below_quarter = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.NextDouble();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    below_quarter += u < 0.25;
  }
  // Mean 0.5 with sd sqrt(1/12/n) ~ 0.0009; fraction below 0.25 has sd ~ 0.0014.
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(static_cast<double>(below_quarter) / n, 0.25, 0.007);
}

TEST(Xoshiro256Test, DifferentSeedsGiveDifferentStreams) {
  Xoshiro256 a(1);
  Xoshiro256 b(2);
  int equal = 0;
  for (int i = 0; i < 8; ++i) equal += a.NextU64() == b.NextU64();
  EXPECT_EQ(equal, 0);
}

}  // namespace
}  // namespace jamba
