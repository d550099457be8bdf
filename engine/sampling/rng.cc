#include "engine/sampling/rng.h"

#include "common/check.h"

namespace jamba {
namespace {

inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

uint64_t SplitMix64Next(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Xoshiro256::Xoshiro256(uint64_t seed) {
  // SplitMix64 never yields four zero outputs in a row, so the state is valid for any seed.
  for (uint64_t& word : s_) word = SplitMix64Next(seed);
}

Xoshiro256 Xoshiro256::FromState(const std::array<uint64_t, 4>& state) {
  JAMBA_CHECK(state[0] != 0 || state[1] != 0 || state[2] != 0 || state[3] != 0);
  Xoshiro256 rng;
  rng.s_ = state;
  return rng;
}

uint64_t Xoshiro256::NextU64() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Xoshiro256::NextDouble() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

}  // namespace jamba
