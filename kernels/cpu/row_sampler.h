// Steps 2-7 of token sampling for one row of logits (the order and rules are documented in
// engine/sampling/sampler.h): temperature / greedy, top-k, top-p, min-p, softmax and the draw
// from a given uniform. The host Sampler runs this after its repetition penalty, and the CPU
// backend's SampleRows runs it per row, so a token sampled "on the device" of a CPU backend is
// the host sampler's token, bit for bit; the CUDA kernel is tested against it.
#ifndef JAMBA_KERNELS_CPU_ROW_SAMPLER_H_
#define JAMBA_KERNELS_CPU_ROW_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/row_sampling.h"

namespace jamba {

// Not thread-safe; reuses its buffers across rows (O(V) memory at most).
class RowSampler {
 public:
  struct Candidate {
    int32_t id;
    float logit;    // as given (NaN read as -inf), before temperature
    double weight;  // exp((logit - max logit) / T), unnormalised probability; > 0
  };

  // Steps 2-6 for `logits` [V >= 1] (NaN counts as -inf) under `params` (uniform unused; must
  // satisfy RowSamplingValid unless the temperature is 0): afterwards candidates() are the
  // survivors in draw order (by id, or by rank once top-p has ranked them), with total_weight()
  // their sum.
  void Process(absl::Span<const float> logits, const RowSampling& params);
  const std::vector<Candidate>& candidates() const { return candidates_; }
  double total_weight() const { return total_weight_; }

  // Step 7 over the candidates of the last Process: the first whose cumulative weight exceeds
  // u * total_weight(), the last one if rounding leaves none. u in [0, 1).
  int32_t Draw(double u) const;

 private:
  void ApplyTopP(float top_p);
  void ApplyMinPAndDropZeros(float min_p);

  std::vector<Candidate> candidates_;
  double total_weight_ = 0.0;
};

}  // namespace jamba

#endif  // JAMBA_KERNELS_CPU_ROW_SAMPLER_H_
