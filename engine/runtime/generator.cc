#include "engine/runtime/generator.h"

#include <algorithm>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/sampling/sampler.h"
#include "engine/tokenizer/streaming_detokenizer.h"

namespace jamba {
namespace {

// Prompt tokens pushed into the detokenizer before the first generated one, so the first
// generated token decodes as it does inside the full text (e.g. keeps its leading space under
// a Metaspace decoder) - the text a client appends to its prompt.
constexpr size_t kDetokenizerContext = 4;

// Removes the sequence on every exit path.
class SequenceGuard {
 public:
  SequenceGuard(Engine* engine, SequenceId id) : engine_(engine), id_(id) {}
  ~SequenceGuard() { engine_->RemoveSequence(id_).IgnoreError(); }
  SequenceGuard(const SequenceGuard&) = delete;
  SequenceGuard& operator=(const SequenceGuard&) = delete;

 private:
  Engine* engine_;
  SequenceId id_;
};

}  // namespace

absl::StatusOr<GenerateResult> Generate(Engine* engine, const Tokenizer* tokenizer,
                                        const GenerateRequest& request,
                                        const TokenCallback& on_token) {
  const ModelConfig& c = engine->config();
  const SamplingParams& params = request.params;
  JAMBA_RETURN_IF_ERROR(ValidateSamplingParams(params, static_cast<int32_t>(c.vocab_size)));
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt: no tokens");
  if (request.prefill_chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill_chunk must be >= 1, got ", request.prefill_chunk));
  }
  if (!params.stop_strings.empty() && tokenizer == nullptr) {
    return absl::InvalidArgumentError("stop_strings need a tokenizer");
  }
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len > engine->max_context()) {
    return absl::OutOfRangeError(absl::StrCat("prompt: ", prompt_len,
                                              " tokens exceed the context limit of ",
                                              engine->max_context()));
  }

  JAMBA_ASSIGN_OR_RETURN(SequenceId seq, engine->AddSequence());
  SequenceGuard guard(engine, seq);
  GenerateResult result;
  result.prompt_tokens = prompt_len;
  const int64_t vocab = c.vocab_size;
  const bool all_prompt_rows = request.keep_prompt_logits || params.prompt_logprobs >= 0;
  if (request.keep_prompt_logits) {
    result.prompt_logits.reserve(static_cast<size_t>(prompt_len * vocab));
  }

  // ---- Prefill in chunks; keep the logits of the last prompt position. ------------------
  std::vector<float> next_logits(static_cast<size_t>(vocab));  // [V] logits to sample from
  std::vector<float> prev_row;  // [V] logits of the previous prompt position (prompt logprobs)
  for (int64_t begin = 0; begin < prompt_len; begin += request.prefill_chunk) {
    const int64_t n = std::min<int64_t>(request.prefill_chunk, prompt_len - begin);
    StepItem item{seq, absl::MakeConstSpan(request.prompt.data() + begin, n),
                  all_prompt_rows ? LogitsRows::kAll : LogitsRows::kLast};
    JAMBA_ASSIGN_OR_RETURN(StepOutput out, engine->Step(absl::MakeConstSpan(&item, 1)));
    if (all_prompt_rows) {
      for (int64_t r = 0; r < n; ++r) {
        absl::Span<const float> row = out.Row(0, r);
        const int64_t pos = begin + r;
        if (request.keep_prompt_logits) {
          result.prompt_logits.insert(result.prompt_logits.end(), row.begin(), row.end());
        }
        if (params.prompt_logprobs >= 0 && pos >= 1) {
          result.prompt_logprobs.push_back(
              LogprobsFor(prev_row, request.prompt[pos], params.prompt_logprobs));
        }
        prev_row.assign(row.begin(), row.end());
      }
    }
    if (begin + n == prompt_len) {
      absl::Span<const float> last = out.Last(0);
      std::copy(last.begin(), last.end(), next_logits.begin());
    }
  }

  // ---- Decode. -------------------------------------------------------------------------
  std::vector<int32_t> eos;
  for (int64_t id : c.eos_token_ids) eos.push_back(static_cast<int32_t>(id));
  if (tokenizer != nullptr && tokenizer->eos_id().has_value() &&
      std::find(eos.begin(), eos.end(), *tokenizer->eos_id()) == eos.end()) {
    eos.push_back(*tokenizer->eos_id());
  }
  // The context limit caps the number of new tokens, and the stop checker then ends the
  // sequence with "length" there, releasing any held-back text.
  SamplingParams capped = params;
  capped.max_new_tokens = static_cast<int32_t>(
      std::min<int64_t>(params.max_new_tokens, engine->max_context() - prompt_len));
  if (capped.max_new_tokens < 1) {
    return absl::OutOfRangeError(absl::StrCat("prompt: ", prompt_len,
                                              " tokens fill the context limit of ",
                                              engine->max_context()));
  }
  StopChecker stop(capped, eos);
  Sampler sampler(params);
  std::unique_ptr<StreamingDetokenizer> detok;
  if (tokenizer != nullptr) {
    detok = std::make_unique<StreamingDetokenizer>(tokenizer, /*skip_special_tokens=*/true);
    const size_t from =
        request.prompt.size() - std::min(request.prompt.size(), kDetokenizerContext);
    for (size_t i = from; i < request.prompt.size(); ++i) {
      if (!tokenizer->IsValidId(request.prompt[i])) continue;
      JAMBA_RETURN_IF_ERROR(detok->Push(request.prompt[i]).status());
    }
  }
  std::vector<int32_t> context = request.prompt;  // prompt + generated, for the penalty
  std::string tail;  // text the detokenizer still held when the sequence ended by length
  while (true) {
    SampleResult sample = sampler.Sample(next_logits, context);
    context.push_back(sample.token);
    result.token_ids.push_back(sample.token);
    if (sample.logprobs.has_value()) result.logprobs.push_back(*sample.logprobs);
    std::string delta;
    if (detok != nullptr && tokenizer->IsValidId(sample.token)) {
      JAMBA_ASSIGN_OR_RETURN(delta, detok->Push(sample.token));
    }
    StopUpdate update = stop.Append(sample.token, delta);
    if (update.finish_reason == FinishReason::kLength && detok != nullptr) {
      JAMBA_ASSIGN_OR_RETURN(tail, detok->Flush());
      update.text += tail;
    }
    if (on_token) on_token(TokenEvent{sample.token, update.text, sample.logprobs});
    if (stop.finished()) break;
    StepItem item{seq, absl::MakeConstSpan(&context.back(), 1), LogitsRows::kLast};
    JAMBA_ASSIGN_OR_RETURN(StepOutput out, engine->Step(absl::MakeConstSpan(&item, 1)));
    absl::Span<const float> last = out.Last(0);
    std::copy(last.begin(), last.end(), next_logits.begin());
  }
  result.finish_reason = stop.finish_reason();
  result.text = stop.text() + tail;
  return result;
}

}  // namespace jamba
