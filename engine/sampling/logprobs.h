// Log-probabilities reported to clients (the `logprobs` / `prompt_logprobs` options).
//
// They are log_softmax of the RAW model logits of the position: before the repetition
// penalty, temperature, top-k, top-p and min-p. This is what vLLM returns by default
// (logprobs_mode "raw_logprobs"), and it makes the numbers independent of the sampling
// settings: a greedy and a temperature-2 request report the same logprobs for a token.
#ifndef JAMBA_ENGINE_SAMPLING_LOGPROBS_H_
#define JAMBA_ENGINE_SAMPLING_LOGPROBS_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace jamba {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  // The top_n most likely tokens as (token, logprob), most likely first; equal logprobs are
  // ordered by token id. May include `token` itself.
  std::vector<std::pair<int32_t, float>> top;
};

// logits: [vocab] raw logits of one position (vocab >= 1); token in [0, vocab); top_n <= 0
// gives an empty `top`, values above vocab are clamped. NaN logits count as -inf. If every
// logit is -inf the distribution is undefined and every logprob is -inf; if some are +inf,
// those share the probability equally. Cost: O(V log top_n).
TokenLogprob LogprobsFor(absl::Span<const float> logits, int32_t token, int32_t top_n);

}  // namespace jamba

#endif  // JAMBA_ENGINE_SAMPLING_LOGPROBS_H_
