// How one row of logits becomes a token on the device: the per-row parameters of
// Backend::SampleRows. No abseil here: this header is shared with CUDA translation units.
#ifndef JAMBA_KERNELS_ROW_SAMPLING_H_
#define JAMBA_KERNELS_ROW_SAMPLING_H_

#include <cstdint>

namespace jamba {

// Steps 2-7 of the host sampler (engine/sampling/sampler.h), with the meaning of the fields of
// SamplingParams; the repetition penalty (step 1) and logprobs stay on the host, so requests
// that use them are not sampled on a device. The default value is greedy decoding.
struct RowSampling {
  // [0, 1): the sequence's RNG draw for this token (Sampler::DrawUniform); unused when greedy.
  double uniform = 0.0;
  float temperature = 0.0f;  // >= 0, finite; 0 = greedy: argmax, the fields below ignored
  int32_t top_k = 0;         // >= 0; 0 or >= vocab: disabled
  float top_p = 1.0f;        // (0, 1]; 1: disabled
  float min_p = 0.0f;        // [0, 1); 0: disabled
};

// Whether the fields are in the ranges above (NaN fails every check).
inline bool RowSamplingValid(const RowSampling& p) {
  return p.uniform >= 0.0 && p.uniform < 1.0 && p.temperature >= 0.0f &&
         p.temperature <= 3.40282347e38f && p.top_k >= 0 && p.top_p > 0.0f && p.top_p <= 1.0f &&
         p.min_p >= 0.0f && p.min_p < 1.0f;
}

}  // namespace jamba

#endif  // JAMBA_KERNELS_ROW_SAMPLING_H_
