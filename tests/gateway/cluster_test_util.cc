#include "tests/gateway/cluster_test_util.h"

#include <chrono>

#include "grpcpp/client_context.h"

namespace jamba {

std::vector<int32_t> TestPrompt(int64_t length, int64_t vocab, uint64_t salt, int32_t first_id) {
  std::vector<int32_t> ids(static_cast<size_t>(length));
  uint64_t x = 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(length) + 1) + salt * 0x632BE5ABull;
  const uint64_t range = static_cast<uint64_t>(vocab - first_id);
  for (int32_t& id : ids) {
    x ^= x << 13;  // xorshift64
    x ^= x >> 7;
    x ^= x << 17;
    id = first_id + static_cast<int32_t>(x % range);
  }
  return ids;
}

SamplingParams TestSampling(int32_t max_new_tokens, float temperature,
                            absl::optional<uint64_t> seed) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  p.max_new_tokens = max_new_tokens;
  p.ignore_eos = true;
  return p;
}

v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, const SamplingParams& params) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  v1::SamplingParams* s = r.mutable_sampling();
  s->set_temperature(params.temperature);
  s->set_top_k(params.top_k);
  s->set_top_p(params.top_p);
  s->set_min_p(params.min_p);
  s->set_repetition_penalty(params.repetition_penalty);
  if (params.seed.has_value()) s->set_seed(*params.seed);
  s->set_max_new_tokens(params.max_new_tokens);
  s->mutable_stop_token_ids()->Add(params.stop_token_ids.begin(), params.stop_token_ids.end());
  for (const std::string& stop : params.stop_strings) s->add_stop(stop);
  s->set_ignore_eos(params.ignore_eos);
  return r;
}

StreamResult RunGenerate(v1::Jamba::Stub* stub, const v1::GenerateRequest& request,
                         double deadline_s) {
  StreamResult r;
  grpc::ClientContext ctx;
  if (deadline_s > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000)));
  }
  std::unique_ptr<grpc::ClientReader<v1::GenerateChunk>> reader = stub->Generate(&ctx, request);
  v1::GenerateChunk chunk;
  while (reader->Read(&chunk)) {
    ++r.chunks;
    r.token_ids.insert(r.token_ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    r.text += chunk.text();
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++r.finish_chunks;
      r.finish_reason = chunk.finish_reason();
      r.prompt_tokens = chunk.usage().prompt_tokens();
      r.completion_tokens = chunk.usage().completion_tokens();
    }
  }
  r.status = reader->Finish();
  return r;
}

absl::StatusOr<GenerateResult> SoloGenerate(Engine* engine, const std::vector<int32_t>& prompt,
                                            const SamplingParams& params) {
  GenerateRequest request;
  request.prompt = prompt;
  request.params = params;
  return Generate(engine, nullptr, request);
}

}  // namespace jamba
