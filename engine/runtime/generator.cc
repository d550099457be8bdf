#include "engine/runtime/generator.h"

#include <algorithm>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace jamba {
namespace {

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
  if (request.prefill_chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill_chunk must be >= 1, got ", request.prefill_chunk));
  }
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Completion> completion,
                         Completion::Create(engine->config(), tokenizer, request.prompt,
                                            request.params, engine->max_context()));
  JAMBA_ASSIGN_OR_RETURN(SequenceId seq, engine->AddSequence());
  SequenceGuard guard(engine, seq);
  GenerateResult result;
  const int64_t prompt_len = completion->prompt_tokens();
  result.prompt_tokens = prompt_len;
  const int64_t vocab = engine->vocab_size();
  const bool all_prompt_rows = request.keep_prompt_logits || completion->wants_prompt_rows();
  if (request.keep_prompt_logits) {
    result.prompt_logits.reserve(static_cast<size_t>(prompt_len * vocab));
  }

  // Requests without penalties or logprobs are sampled on the device (only the id is copied
  // back); the others sample from the last row's logits on the host.
  const bool on_device = completion->samples_on_device();
  const LogitsRows last_rows = on_device ? LogitsRows::kLastToken : LogitsRows::kLast;

  // ---- Prefill in chunks; keep the logits (or token) of the last prompt position. -------
  std::vector<float> next_logits(static_cast<size_t>(vocab));  // [V] logits to sample from
  int32_t next_token = -1;                                     // on_device: the token itself
  for (int64_t begin = 0; begin < prompt_len; begin += request.prefill_chunk) {
    const int64_t n = std::min<int64_t>(request.prefill_chunk, prompt_len - begin);
    const bool last_chunk = begin + n == prompt_len;
    const LogitsRows rows = all_prompt_rows ? LogitsRows::kAll
                            : last_chunk    ? last_rows
                                            : LogitsRows::kNone;
    const StepItem item{
        seq, absl::MakeConstSpan(request.prompt.data() + begin, n), rows,
        rows == LogitsRows::kLastToken ? completion->DeviceSampling() : RowSampling{}};
    JAMBA_ASSIGN_OR_RETURN(StepOutput out, engine->Step(absl::MakeConstSpan(&item, 1)));
    if (all_prompt_rows) {
      for (int64_t r = 0; r < n; ++r) {
        absl::Span<const float> row = out.Row(0, r);
        if (request.keep_prompt_logits) {
          result.prompt_logits.insert(result.prompt_logits.end(), row.begin(), row.end());
        }
        completion->ObservePromptRow(begin + r, row);
      }
    }
    if (last_chunk) {
      if (item.logits == LogitsRows::kLastToken) {
        next_token = out.token[0];
      } else {
        absl::Span<const float> last = out.Last(0);
        std::copy(last.begin(), last.end(), next_logits.begin());
        // With kAll prompt rows the host samples this token from the logits (same rule).
      }
    }
  }

  // ---- Decode. -------------------------------------------------------------------------
  while (true) {
    JAMBA_ASSIGN_OR_RETURN(TokenEvent event, next_token >= 0 ? completion->NextToken(next_token)
                                                             : completion->Next(next_logits));
    if (on_token) on_token(event);
    if (completion->finished()) break;
    const int32_t token = completion->generated().back();
    const StepItem item{seq, absl::MakeConstSpan(&token, 1), last_rows,
                        on_device ? completion->DeviceSampling() : RowSampling{}};
    JAMBA_ASSIGN_OR_RETURN(StepOutput out, engine->Step(absl::MakeConstSpan(&item, 1)));
    if (on_device) {
      next_token = out.token[0];
    } else {
      absl::Span<const float> last = out.Last(0);
      std::copy(last.begin(), last.end(), next_logits.begin());
    }
  }
  result.token_ids = completion->generated();
  result.text = completion->text();
  result.finish_reason = completion->finish_reason();
  result.logprobs = completion->logprobs();
  result.prompt_logprobs = completion->prompt_logprobs();
  return result;
}

}  // namespace jamba
