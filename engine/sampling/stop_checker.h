// Stop conditions of one sequence, and the text a streaming client may be shown.
//
// The caller feeds each generated token with the text it added to the detokenized output.
// The checker finishes the sequence with
//   - "stop" when the token is in stop_token_ids, or is one of the model's eos ids (unless
//     ignore_eos). That token's text is not part of the output (vLLM's default);
//   - "stop" when the output contains a stop string. The output is cut just BEFORE the
//     earliest occurrence of any stop string (ties: the first in stop_strings) and the stop
//     string is not returned. Text that might be the beginning of a stop string is held back
//     until the next deltas decide, so a streaming client never sees part of a stop string;
//   - "length" when max_new_tokens tokens have been generated and none of the above applied;
//     the held-back text is then released, as nothing can complete it any more.
// The checks run in that order for each token (vLLM's order), so a stop token arriving as
// the last allowed token finishes with "stop".
//
// Held-back text starts at a UTF-8 character boundary when the stop strings and the deltas
// are valid UTF-8 (a stop string cannot begin with a continuation byte), so released text is
// valid UTF-8 too.
#ifndef JAMBA_ENGINE_SAMPLING_STOP_CHECKER_H_
#define JAMBA_ENGINE_SAMPLING_STOP_CHECKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "engine/sampling/sampling_params.h"

namespace jamba {

enum class FinishReason { kNone, kStop, kLength };

// "stop", "length", or "" for kNone (the OpenAI / vLLM finish_reason strings).
const char* FinishReasonName(FinishReason reason);

struct StopUpdate {
  std::string text;  // output text released by this token, safe to stream
  FinishReason finish_reason = FinishReason::kNone;
};

class StopChecker {
 public:
  // `params` must have passed ValidateSamplingParams. eos_token_ids: the model's eos ids
  // (ModelConfig::eos_token_ids); they stop the sequence unless params.ignore_eos.
  StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids);

  // Feeds the next generated token and its text delta (may be empty). Must not be called
  // once finished().
  StopUpdate Append(int32_t token, absl::string_view text_delta);

  bool finished() const { return finish_reason_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_reason_; }
  // What caused a kStop: the token id, or the stop string (vLLM's stop_reason).
  absl::optional<int32_t> stop_token() const { return stop_token_; }
  absl::optional<std::string> stop_string() const { return stop_string_; }
  int32_t num_tokens() const { return num_tokens_; }
  // All text released so far; once finished(), the final output text.
  const std::string& text() const { return released_; }

 private:
  bool IsStopToken(int32_t token) const;
  // Moves the whole of pending_ into released_ and returns it.
  std::string ReleaseAll();

  std::vector<int32_t> stop_ids_;  // stop_token_ids plus eos ids unless ignore_eos
  std::vector<std::string> stop_strings_;
  int32_t max_new_tokens_;
  int32_t num_tokens_ = 0;
  std::string released_;
  std::string pending_;  // held back: a suffix of the output that begins some stop string
  FinishReason finish_reason_ = FinishReason::kNone;
  absl::optional<int32_t> stop_token_;
  absl::optional<std::string> stop_string_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_SAMPLING_STOP_CHECKER_H_
