// Helpers the gateway tests share: deterministic prompts, requests over the public API, a
// client that collects a whole stream, and the single-process reference (jamba::Generate on
// an Engine) that the cluster must reproduce token for token.
#ifndef JAMBA_TESTS_GATEWAY_CLUSTER_TEST_UTIL_H_
#define JAMBA_TESTS_GATEWAY_CLUSTER_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/generator.h"
#include "engine/sampling/sampling_params.h"
#include "grpcpp/support/status.h"
#include "jamba/v1/generate.grpc.pb.h"

namespace jamba {

// `length` token ids in [first_id, vocab), a fixed pseudo-random function of (length, salt).
std::vector<int32_t> TestPrompt(int64_t length, int64_t vocab, uint64_t salt, int32_t first_id = 0);

// Sampling as the tests use it: temperature 0 is greedy; ignore_eos keeps lengths fixed.
SamplingParams TestSampling(int32_t max_new_tokens, float temperature = 0.0f,
                            absl::optional<uint64_t> seed = absl::nullopt);

// The public API's request for `prompt` (token ids) with `params`.
v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, const SamplingParams& params);

// Everything one Generate stream delivered.
struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> token_ids;
  std::string text;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  int32_t prompt_tokens = -1;
  int32_t completion_tokens = -1;
  int chunks = 0;
  int finish_chunks = 0;  // chunks that carried a finish reason (must be exactly the last)
};

// Reads the stream to its end. `deadline_s` > 0 sets a call deadline.
StreamResult RunGenerate(v1::Jamba::Stub* stub, const v1::GenerateRequest& request,
                         double deadline_s = 120);

// jamba::Generate of `prompt` alone on `engine` (no tokenizer).
absl::StatusOr<GenerateResult> SoloGenerate(Engine* engine, const std::vector<int32_t>& prompt,
                                            const SamplingParams& params);

}  // namespace jamba

#endif  // JAMBA_TESTS_GATEWAY_CLUSTER_TEST_UTIL_H_
