// Per-request sampling and stopping parameters, with the same meaning as in Hugging Face
// `generate` and vLLM's SamplingParams (differences are noted at the field).
#ifndef JAMBA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define JAMBA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/optional.h"

namespace jamba {

// Largest accepted max_new_tokens (Jamba's context length); the runtime also enforces the
// model's own context limit.
inline constexpr int32_t kMaxNewTokensLimit = 262144;
// Largest accepted logprobs / prompt_logprobs (vLLM's default max_logprobs).
inline constexpr int32_t kMaxLogprobs = 20;

struct SamplingParams {
  // 0 selects greedy decoding (argmax; ties go to the lowest id), which ignores top_k, top_p,
  // min_p and the seed but still applies the repetition penalty.
  float temperature = 1.0f;
  int32_t top_k = 0;   // 0 = disabled; values above the vocabulary size keep everything
  float top_p = 1.0f;  // (0, 1]; 1 = disabled
  float min_p = 0.0f;  // [0, 1); 0 = disabled
  // Hugging Face semantics: every id present in the context (prompt + generated so far,
  // counted once) gets logit > 0 ? logit / p : logit * p. 1 = disabled.
  float repetition_penalty = 1.0f;
  // Same seed + same logits -> same tokens, on every platform. Unset: a random seed.
  absl::optional<uint64_t> seed;
  // -1: none; n >= 0: the logprob of the chosen token plus the n most likely alternatives.
  int32_t logprobs = -1;
  int32_t prompt_logprobs = -1;  // same for the prompt tokens (the caller uses LogprobsFor)
  int32_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;  // e.g. Jamba-1.5: {2, 518}
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;  // the model's eos ids do not stop; stop_token_ids still do
};

// OK, or InvalidArgument whose message starts with the offending field's name: temperature
// negative or not finite, top_p outside (0, 1], top_k < 0, min_p outside [0, 1),
// repetition_penalty not finite or <= 0, max_new_tokens outside [1, kMaxNewTokensLimit],
// logprobs / prompt_logprobs outside [-1, kMaxLogprobs], stop_token_ids outside
// [0, vocab_size), empty stop_strings; and vocab_size < 1.
absl::Status ValidateSamplingParams(const SamplingParams& params, int32_t vocab_size);

}  // namespace jamba

#endif  // JAMBA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
