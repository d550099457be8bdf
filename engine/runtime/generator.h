// Generation of one completion on an Engine: chunked prefill of the prompt, then decode steps
// with the sampler, stop conditions and streaming detokenization. This is jamba-run's loop and
// the reference the cluster's gateway must reproduce token for token.
#ifndef JAMBA_ENGINE_RUNTIME_GENERATOR_H_
#define JAMBA_ENGINE_RUNTIME_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "engine/runtime/completion.h"
#include "engine/runtime/engine.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_checker.h"
#include "engine/tokenizer/tokenizer.h"

namespace jamba {

struct GenerateRequest {
  std::vector<int32_t> prompt;  // >= 1 token ids (BOS included if the model wants one)
  SamplingParams params;
  int32_t prefill_chunk = 256;      // prompt tokens per forward step (>= 1)
  bool keep_prompt_logits = false;  // fill GenerateResult::prompt_logits
};

struct GenerateResult {
  // Generated ids, including a final stop token (whose text is not in `text`), as in
  // transformers' generate and vLLM.
  std::vector<int32_t> token_ids;
  std::string text;  // empty without a tokenizer
  FinishReason finish_reason = FinishReason::kNone;
  std::vector<TokenLogprob> logprobs;  // per generated token, if params.logprobs >= 0
  // Per prompt position p >= 1: logprob of prompt[p] given prompt[0, p), if
  // params.prompt_logprobs >= 0 (position 0 has none, as in vLLM).
  std::vector<TokenLogprob> prompt_logprobs;
  std::vector<float> prompt_logits;  // [prompt, vocab] f32 if keep_prompt_logits
  int64_t prompt_tokens = 0;
};

using TokenCallback = std::function<void(const TokenEvent&)>;

// Runs the request on a fresh sequence of `engine`, which is removed at the end (also on
// error). `tokenizer` may be null (ids only: no text, no stop strings). `on_token` may be null.
// Errors: InvalidArgument for bad parameters or prompt ids, OutOfRange for a prompt longer than
// the context, ResourceExhausted when the engine lacks capacity.
absl::StatusOr<GenerateResult> Generate(Engine* engine, const Tokenizer* tokenizer,
                                        const GenerateRequest& request,
                                        const TokenCallback& on_token = nullptr);

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_GENERATOR_H_
