// Token sampling for one sequence, on the host, from the f32 logits of one position.
//
// Sample() processes the logits in this order (the order of Hugging Face `generate`'s
// warpers and of vLLM's sampler):
//   1. repetition penalty (HF semantics, see SamplingParams::repetition_penalty);
//   2. temperature: logits / T; T == 0 is greedy: argmax of the penalised logits, lowest id
//      on ties, skipping steps 3-7 and the RNG;
//   3. top-k: keep the k highest logits. Ties at the k-th place go to the lower id, so at
//      most k tokens survive (HF and vLLM keep every token tied with the k-th);
//   4. top-p: keep the smallest set of most likely tokens (under the temperature-scaled
//      softmax of the top-k survivors) whose cumulative probability >= top_p; always >= 1;
//   5. min-p: keep tokens whose probability is >= min_p times the largest probability;
//   6. softmax over the survivors;
//   7. draw with the sequence's own RNG (one uniform double per call).
// NaN logits count as -inf and are never chosen. If every logit is -inf (or NaN) the result is
// token 0, as greedy's tie rule would give; if some logits are +inf, those share the
// probability equally. Logprobs (params.logprobs >= 0) are of the RAW logits, see logprobs.h.
//
// Determinism: the RNG (rng.h) and the draw are ours, and the survivors are visited in a
// canonical order (by id, or by rank once top-p has ranked them), so a seed reproduces a
// sequence on any platform whose exp() is correctly rounded or nearly so.
//
// Steps 2-7 are kernels/cpu/row_sampler.h, which the CPU backend's SampleRows also runs: a
// request sampled on the device (Backend::SampleRows with DrawUniform()'s draw) gets the
// tokens Sample() would give, bit for bit on the CPU and up to rounding on a GPU.
//
// Cost per call: O(V) for the copy and penalty, O(V log k) for top-k, and for top-p a partial
// sort of only as many tokens as it keeps (grown geometrically), O(V log V) at worst.
#ifndef JAMBA_ENGINE_SAMPLING_SAMPLER_H_
#define JAMBA_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/types/optional.h"
#include "absl/types/span.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/rng.h"
#include "engine/sampling/sampling_params.h"
#include "kernels/cpu/row_sampler.h"
#include "kernels/row_sampling.h"

namespace jamba {

struct SampleResult {
  int32_t token = 0;
  absl::optional<TokenLogprob> logprobs;  // set iff params.logprobs >= 0
};

struct TokenProb {
  int32_t token = 0;
  double prob = 0.0;
};

// One per sequence; not thread-safe. Owns the RNG state and scratch buffers reused across
// calls (O(V) memory).
class Sampler {
 public:
  // `params` must have passed ValidateSamplingParams. Without a seed, one is drawn from
  // std::random_device.
  explicit Sampler(const SamplingParams& params);

  // logits: [vocab] raw model logits of one position, vocab >= 1.
  // context: the prompt and the tokens generated so far; ids outside [0, vocab) are ignored.
  SampleResult Sample(absl::Span<const float> logits, absl::Span<const int32_t> context);

  // The distribution Sample() would draw from for these inputs, after steps 1-6: tokens with
  // probability > 0, summing to 1, in the order the draw visits them (greedy: one token with
  // probability 1). Leaves the RNG untouched. For tests and debugging tools.
  std::vector<TokenProb> Distribution(absl::Span<const float> logits,
                                      absl::Span<const int32_t> context);

  // The uniform Sample() would draw next, for sampling on a device: advances the RNG as one
  // Sample() call at temperature > 0 does.
  double DrawUniform();
  // Steps 2-7's parameters (uniform left 0), for Backend::SampleRows.
  RowSampling RowParams() const;

  const SamplingParams& params() const { return params_; }

 private:
  // Steps 1-6: row_ holds the survivors (weights > 0, in draw order) afterwards.
  void Process(absl::Span<const float> logits, absl::Span<const int32_t> context);
  void ApplyRepetitionPenalty(absl::Span<const int32_t> context);

  SamplingParams params_;
  Xoshiro256 rng_;
  std::vector<float> work_;    // [vocab] penalised logits, NaN replaced by -inf
  std::vector<uint8_t> seen_;  // [vocab] marks for context dedup; all 0 between calls
  RowSampler row_;             // steps 2-7
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_SAMPLING_SAMPLER_H_
