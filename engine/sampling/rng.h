// The sampler's random number generator: xoshiro256** (Blackman & Vigna), seeded through
// SplitMix64 as its authors recommend. Written here rather than taken from <random> so that
// a seed gives the same stream, and the same doubles, with every compiler and C++ library.
#ifndef JAMBA_ENGINE_SAMPLING_RNG_H_
#define JAMBA_ENGINE_SAMPLING_RNG_H_

#include <array>
#include <cstdint>

namespace jamba {

class Xoshiro256 {
 public:
  // State = four consecutive SplitMix64 outputs starting from `seed`.
  explicit Xoshiro256(uint64_t seed);
  // Raw state, for the published test vectors; must not be all zero.
  static Xoshiro256 FromState(const std::array<uint64_t, 4>& state);

  uint64_t NextU64();
  // Uniform in [0, 1): the top 53 bits of NextU64() times 2^-53.
  double NextDouble();

 private:
  Xoshiro256() = default;
  std::array<uint64_t, 4> s_{};
};

// One step of SplitMix64: advances `state` and returns the next output.
uint64_t SplitMix64Next(uint64_t& state);

}  // namespace jamba

#endif  // JAMBA_ENGINE_SAMPLING_RNG_H_
