#include "engine/sampling/sampling_params.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::StartsWith;

constexpr int32_t kVocab = 1000;

TEST(ValidateSamplingParamsTest, DefaultsAndTypicalValuesAreValid) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams(), kVocab).ok());
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = kVocab * 2;  // larger than the vocabulary: keeps everything
  p.top_p = 1.0f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.3f;
  p.seed = 0;
  p.logprobs = 20;
  p.prompt_logprobs = 0;
  p.max_new_tokens = 1;
  p.stop_token_ids = {0, kVocab - 1};
  p.stop_strings = {"END", "\n\n"};
  p.ignore_eos = true;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab).ok());
}

struct BadCase {
  std::string field;
  std::function<void(SamplingParams&)> mutate;
};

TEST(ValidateSamplingParamsTest, ErrorsNameTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const BadCase cases[] = {
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"temperature", [nan](SamplingParams& p) { p.temperature = nan; }},
      {"temperature", [inf](SamplingParams& p) { p.temperature = inf; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.01f; }},
      {"top_p", [nan](SamplingParams& p) { p.top_p = nan; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.01f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.0f; }},
      {"min_p", [nan](SamplingParams& p) { p.min_p = nan; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = -1.0f; }},
      {"repetition_penalty", [nan](SamplingParams& p) { p.repetition_penalty = nan; }},
      {"max_new_tokens", [](SamplingParams& p) { p.max_new_tokens = 0; }},
      {"max_new_tokens", [](SamplingParams& p) { p.max_new_tokens = kMaxNewTokensLimit + 1; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = -2; }},
      {"prompt_logprobs", [](SamplingParams& p) { p.prompt_logprobs = 21; }},
      {"stop_token_ids",
       [](SamplingParams& p) {
         p.stop_token_ids = {2, kVocab};
       }},
      {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {-1}; }},
      {"stop_strings",
       [](SamplingParams& p) {
         p.stop_strings = {"ok", ""};
       }},
  };
  for (const BadCase& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const absl::Status status = ValidateSamplingParams(p, kVocab);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(status.message()), StartsWith(c.field + " ")) << status;
  }
}

TEST(ValidateSamplingParamsTest, BoundaryValuesAreAccepted) {
  SamplingParams p;
  p.max_new_tokens = kMaxNewTokensLimit;
  p.logprobs = kMaxLogprobs;
  p.prompt_logprobs = -1;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab).ok());
}

TEST(ValidateSamplingParamsTest, RejectsEmptyVocabulary) {
  const absl::Status status = ValidateSamplingParams(SamplingParams(), 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("vocab_size"));
}

}  // namespace
}  // namespace jamba
