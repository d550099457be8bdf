#include "cli/sampling_flags.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace jamba {

void AddSamplingFlags(FlagParser* p, SamplingParams* params) {
  const std::string s = "Sampling";
  p->Int32("max-new-tokens", &params->max_new_tokens, "most tokens to generate", s);
  p->Float("temperature", &params->temperature, "softmax temperature; 0 = greedy (argmax)", s);
  p->Int32("top-k", &params->top_k, "keep the k most likely tokens; 0 = all", s);
  p->Float("top-p", &params->top_p, "nucleus sampling: keep the most likely tokens up to "
           "this cumulative probability, in (0, 1]", s);
  p->Float("min-p", &params->min_p, "drop tokens less likely than min-p times the top one", s);
  p->Float("repetition-penalty", &params->repetition_penalty,
           "divide positive (multiply negative) logits of tokens already in the context", s);
  p->Custom(
      "seed",
      [params](absl::string_view v) {
        uint64_t seed = 0;
        if (!absl::SimpleAtoi(v, &seed)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--seed: expected a non-negative integer, got '", v, "'"));
        }
        params->seed = seed;
        return absl::OkStatus();
      },
      "N", "random seed: the same seed and inputs give the same tokens [default: random]", s);
  p->Custom(
      "stop-token-ids",
      [params](absl::string_view v) { return ParseIdList(v, "stop-token-ids", &params->stop_token_ids); },
      "ID,ID,...", "stop when one of these ids is generated (besides the model's EOS)", s);
  p->Repeated(
      "stop",
      [params](absl::string_view v) {
        params->stop_strings.emplace_back(v);
        return absl::OkStatus();
      },
      "TEXT", "stop before this text; it is not part of the output", s);
  p->Bool("ignore-eos", &params->ignore_eos,
          "keep generating after the model's EOS token (stop ids still stop)", s);
  p->Int32("logprobs", &params->logprobs,
           "report the log probability of each generated token and the N most likely "
           "alternatives (with --json); -1 = off", s);
  p->Int32("prompt-logprobs", &params->prompt_logprobs,
           "the same for every prompt token after the first (with --json); -1 = off", s);
}

}  // namespace jamba
