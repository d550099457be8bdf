#include "engine/runtime/completion.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace jamba {
namespace {

// Prompt tokens pushed into the detokenizer before the first generated one, so the first
// generated token decodes as it does inside the full text (e.g. keeps its leading space under
// a Metaspace decoder) - the text a client appends to its prompt.
constexpr size_t kDetokenizerContext = 4;

}  // namespace

absl::StatusOr<std::unique_ptr<Completion>> Completion::Create(const ModelConfig& c,
                                                               const Tokenizer* tokenizer,
                                                               std::vector<int32_t> prompt,
                                                               const SamplingParams& params,
                                                               int64_t max_context) {
  JAMBA_RETURN_IF_ERROR(ValidateSamplingParams(params, static_cast<int32_t>(c.vocab_size)));
  if (prompt.empty()) return absl::InvalidArgumentError("prompt: no tokens");
  for (size_t t = 0; t < prompt.size(); ++t) {
    if (prompt[t] < 0 || prompt[t] >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt: token id ", prompt[t], " at position ", t,
                       " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (!params.stop_strings.empty() && tokenizer == nullptr) {
    return absl::InvalidArgumentError("stop_strings need a tokenizer");
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len > max_context) {
    return absl::OutOfRangeError(
        absl::StrCat("prompt: ", prompt_len, " tokens exceed the context limit of ", max_context));
  }
  // The context limit caps the number of new tokens, and the stop checker then ends the
  // sequence with "length" there, releasing any held-back text.
  SamplingParams capped = params;
  capped.max_new_tokens =
      static_cast<int32_t>(std::min<int64_t>(params.max_new_tokens, max_context - prompt_len));
  if (capped.max_new_tokens < 1) {
    return absl::OutOfRangeError(
        absl::StrCat("prompt: ", prompt_len, " tokens fill the context limit of ", max_context));
  }
  std::vector<int32_t> eos;
  for (int64_t id : c.eos_token_ids) eos.push_back(static_cast<int32_t>(id));
  if (tokenizer != nullptr && tokenizer->eos_id().has_value() &&
      std::find(eos.begin(), eos.end(), *tokenizer->eos_id()) == eos.end()) {
    eos.push_back(*tokenizer->eos_id());
  }
  std::unique_ptr<Completion> done(
      new Completion(c, tokenizer, std::move(prompt), params, capped, std::move(eos)));
  if (done->detok_ != nullptr) {
    const std::vector<int32_t>& p = done->prompt_;
    for (size_t i = p.size() - std::min(p.size(), kDetokenizerContext); i < p.size(); ++i) {
      if (!tokenizer->IsValidId(p[i])) continue;
      JAMBA_RETURN_IF_ERROR(done->detok_->Push(p[i]).status());
    }
  }
  return done;
}

Completion::Completion(const ModelConfig& config, const Tokenizer* tokenizer,
                       std::vector<int32_t> prompt, const SamplingParams& params,
                       const SamplingParams& capped, std::vector<int32_t> eos)
    : tokenizer_(tokenizer),
      prompt_(std::move(prompt)),
      sampler_(params),
      stop_(capped, std::move(eos)),
      context_(prompt_) {
  if (tokenizer_ != nullptr) {
    detok_ = std::make_unique<StreamingDetokenizer>(tokenizer_, /*skip_special_tokens=*/true);
  }
}

void Completion::ObservePromptRow(int64_t pos, absl::Span<const float> logits) {
  const int32_t n = sampler_.params().prompt_logprobs;
  if (n < 0 || pos + 1 >= prompt_tokens()) return;
  prompt_logprobs_.push_back(LogprobsFor(logits, prompt_[pos + 1], n));
}

bool Completion::samples_on_device() const {
  const SamplingParams& p = sampler_.params();
  return p.repetition_penalty == 1.0f && p.logprobs < 0;
}

RowSampling Completion::DeviceSampling() {
  JAMBA_CHECK_MSG(samples_on_device(), "DeviceSampling: the request needs the host sampler");
  RowSampling row = sampler_.RowParams();
  if (row.temperature == 0.0f) return row;  // greedy draws nothing, as Sample() at T = 0
  if (!pending_uniform_.has_value()) pending_uniform_ = sampler_.DrawUniform();
  row.uniform = *pending_uniform_;
  return row;
}

absl::StatusOr<TokenEvent> Completion::NextToken(int32_t token) {
  JAMBA_CHECK_MSG(samples_on_device(), "NextToken: the request needs the host sampler");
  JAMBA_CHECK_MSG(sampler_.params().temperature == 0.0f || pending_uniform_.has_value(),
                  "NextToken: no DeviceSampling() draw for this token");
  pending_uniform_.reset();
  return Append(SampleResult{token, absl::nullopt});
}

absl::StatusOr<TokenEvent> Completion::Next(absl::Span<const float> logits) {
  JAMBA_CHECK_MSG(!pending_uniform_.has_value(), "Next: this token was drawn for the device");
  return Append(sampler_.Sample(logits, context_));
}

absl::StatusOr<TokenEvent> Completion::Append(SampleResult sample) {
  context_.push_back(sample.token);
  generated_.push_back(sample.token);
  if (sample.logprobs.has_value()) logprobs_.push_back(*sample.logprobs);
  std::string delta;
  if (detok_ != nullptr && tokenizer_->IsValidId(sample.token)) {
    JAMBA_ASSIGN_OR_RETURN(delta, detok_->Push(sample.token));
  }
  StopUpdate update = stop_.Append(sample.token, delta);
  if (update.finish_reason == FinishReason::kLength && detok_ != nullptr) {
    // Text the detokenizer still holds (an incomplete UTF-8 sequence) ends the stream.
    JAMBA_ASSIGN_OR_RETURN(std::string tail, detok_->Flush());
    update.text += tail;
  }
  text_ += update.text;
  return TokenEvent{sample.token, std::move(update.text), sample.logprobs};
}

}  // namespace jamba
