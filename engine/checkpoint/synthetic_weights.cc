#include "engine/checkpoint/synthetic_weights.h"

#include <cmath>
#include <functional>

#include "absl/strings/match.h"
#include "kernels/dtype.h"

namespace jamba {
namespace {

// splitmix64: a fast, well-mixed generator; quality beyond that is irrelevant here.
uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<uint16_t> SyntheticWeightBf16(const std::string& name,
                                          const std::vector<int64_t>& shape, uint64_t seed) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t last = shape.empty() ? 1 : shape.back();
  std::vector<uint16_t> out(static_cast<size_t>(numel));
  auto fill = [&](const std::function<float(int64_t)>& value) {
    for (int64_t i = 0; i < numel; ++i) out[i] = F32ToBf16(value(i));
  };
  if (absl::EndsWith(name, "A_log")) {
    fill([&](int64_t i) { return std::log(static_cast<float>(i % last + 1)); });
  } else if (absl::EndsWith(name, ".D")) {
    fill([](int64_t) { return 1.0f; });
  } else if (absl::EndsWith(name, "dt_proj.bias")) {
    fill([](int64_t) { return -4.6f; });  // softplus(-4.6) ~= 0.01
  } else if (absl::EndsWith(name, ".bias")) {
    fill([](int64_t) { return 0.0f; });
  } else if (shape.size() == 1 && absl::StrContains(name, "norm")) {
    fill([](int64_t) { return 1.0f; });
  } else {
    uint64_t state = seed ^ std::hash<std::string>{}(name);
    const float scale = 1.0f / std::sqrt(static_cast<float>(last));
    fill([&](int64_t) {
      const double u = static_cast<double>(SplitMix(&state) >> 11) * 0x1.0p-53;  // [0, 1)
      return static_cast<float>((2.0 * u - 1.0) * scale);
    });
  }
  return out;
}

}  // namespace jamba
