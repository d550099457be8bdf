// The decode-side state of one completion, independent of where the forward passes run: the
// sampler (with its seeded RNG), stop conditions, the streaming detokenizer, the context the
// repetition penalty reads, and prompt logprobs. Generate() drives one on an Engine; the
// gateway drives one per request over a pipeline of layer workers. Sharing this code is what
// makes the cluster produce jamba-run's tokens.
#ifndef JAMBA_ENGINE_RUNTIME_COMPLETION_H_
#define JAMBA_ENGINE_RUNTIME_COMPLETION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "absl/types/span.h"
#include "engine/config/model_config.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_checker.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/row_sampling.h"

namespace jamba {

// One generated token and the text it released.
struct TokenEvent {
  int32_t token = 0;
  std::string text;  // may be empty (held back for UTF-8 completion or a possible stop string)
  absl::optional<TokenLogprob> logprob;
};

class Completion {
 public:
  // Validates the request against the model: sampling parameters (InvalidArgument naming the
  // field), a non-empty prompt of ids in [0, vocab) (InvalidArgument, field "prompt"), a prompt
  // that leaves room for one token within `max_context` (OutOfRange), stop strings only with a
  // tokenizer. `tokenizer` may be null (ids only) and must outlive the completion.
  static absl::StatusOr<std::unique_ptr<Completion>> Create(const ModelConfig& config,
                                                            const Tokenizer* tokenizer,
                                                            std::vector<int32_t> prompt,
                                                            const SamplingParams& params,
                                                            int64_t max_context);

  const std::vector<int32_t>& prompt() const { return prompt_; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(prompt_.size()); }
  const SamplingParams& params() const { return sampler_.params(); }
  // Whether the caller must pass the logits of every prompt position to ObservePromptRow.
  bool wants_prompt_rows() const { return sampler_.params().prompt_logprobs >= 0; }

  // The logits [vocab] at prompt position `pos` (predicting prompt[pos + 1]); call in order of
  // pos when wants_prompt_rows().
  void ObservePromptRow(int64_t pos, absl::Span<const float> logits);

  // Samples the next token from the logits [vocab] of the last position fed (the last prompt
  // position first, then each generated token) and applies the stop conditions. Must not be
  // called once finished(). Errors only on a detokenizer failure (Internal).
  absl::StatusOr<TokenEvent> Next(absl::Span<const float> logits);

  // Whether the next token may be sampled on the device (Backend::SampleRows through
  // LogitsRows::kLastToken) instead of from the logits on the host: no repetition penalty and
  // no logprobs, which need the context or the whole row. The token is the one Next() would
  // give for the same logits (bit for bit on the CPU backend).
  bool samples_on_device() const;
  // The parameters for sampling the next token on the device, with the sequence's RNG draw
  // for it. The draw is made once per token: calling again before NextToken (a retried step)
  // returns the same value. Requires samples_on_device().
  RowSampling DeviceSampling();
  // Next() for a token sampled on the device with DeviceSampling(); requires
  // samples_on_device().
  absl::StatusOr<TokenEvent> NextToken(int32_t token);

  bool finished() const { return stop_.finished(); }
  FinishReason finish_reason() const { return stop_.finish_reason(); }
  // Generated ids, including a final stop token.
  const std::vector<int32_t>& generated() const { return generated_; }
  // All text released so far (the completion's text once finished).
  const std::string& text() const { return text_; }
  const std::vector<TokenLogprob>& logprobs() const { return logprobs_; }
  const std::vector<TokenLogprob>& prompt_logprobs() const { return prompt_logprobs_; }

 private:
  Completion(const ModelConfig& config, const Tokenizer* tokenizer, std::vector<int32_t> prompt,
             const SamplingParams& params, const SamplingParams& capped, std::vector<int32_t> eos);

  // Records a chosen token: context, stop conditions, detokenized text.
  absl::StatusOr<TokenEvent> Append(SampleResult sample);

  const Tokenizer* tokenizer_;
  std::vector<int32_t> prompt_;
  Sampler sampler_;
  StopChecker stop_;
  std::unique_ptr<StreamingDetokenizer> detok_;  // null without a tokenizer
  std::vector<int32_t> context_;                 // prompt + generated, for the repetition penalty
  std::vector<int32_t> generated_;
  std::string text_;
  std::vector<TokenLogprob> logprobs_;
  std::vector<TokenLogprob> prompt_logprobs_;
  absl::optional<double> pending_uniform_;  // DeviceSampling()'s draw until NextToken
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_COMPLETION_H_
