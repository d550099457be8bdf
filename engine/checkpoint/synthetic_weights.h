// Values of the tensors of a synthetic checkpoint (Checkpoint::Synthetic): random weights for
// benchmarking any config.json without downloading a model. The values are chosen by tensor
// role so a forward pass stays numerically tame (no overflow, no denormal storms that would
// distort timings): norms 1, biases 0, Mamba A_log = log(1..N) (S4D-real init), D = 1,
// dt_proj.bias so that softplus(dt) is about 0.01, and every other matrix uniform in
// +-1/sqrt(fan_in), fan_in = the last dimension.
#ifndef JAMBA_ENGINE_CHECKPOINT_SYNTHETIC_WEIGHTS_H_
#define JAMBA_ENGINE_CHECKPOINT_SYNTHETIC_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace jamba {

// bf16 bits of tensor `name` with `shape`; deterministic in (name, seed).
std::vector<uint16_t> SyntheticWeightBf16(const std::string& name,
                                          const std::vector<int64_t>& shape, uint64_t seed);

}  // namespace jamba

#endif  // JAMBA_ENGINE_CHECKPOINT_SYNTHETIC_WEIGHTS_H_
