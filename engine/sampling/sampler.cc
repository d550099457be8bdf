#include "engine/sampling/sampler.h"

#include <chrono>
#include <random>

#include "common/check.h"
#include "kernels/cpu/top_n.h"

namespace jamba {
namespace {

uint64_t RandomSeed() {
  uint64_t seed =
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  try {
    std::random_device device;
    seed ^= (static_cast<uint64_t>(device()) << 32) ^ device();
  } catch (...) {
    // No entropy source: the clock alone still gives distinct seeds per request.
  }
  return seed;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(params), rng_(params.seed.has_value() ? *params.seed : RandomSeed()) {}

void Sampler::ApplyRepetitionPenalty(absl::Span<const int32_t> context) {
  const float penalty = params_.repetition_penalty;
  const int32_t vocab = static_cast<int32_t>(work_.size());
  if (seen_.size() != work_.size()) seen_.assign(work_.size(), 0);
  for (int32_t id : context) {
    if (id < 0 || id >= vocab || seen_[id]) continue;
    seen_[id] = 1;
    float& logit = work_[id];
    logit = logit > 0.0f ? logit / penalty : logit * penalty;
  }
  for (int32_t id : context) {
    if (id >= 0 && id < vocab) seen_[id] = 0;
  }
}

RowSampling Sampler::RowParams() const {
  RowSampling row;
  row.temperature = params_.temperature;
  row.top_k = params_.top_k;
  row.top_p = params_.top_p;
  row.min_p = params_.min_p;
  return row;
}

void Sampler::Process(absl::Span<const float> logits, absl::Span<const int32_t> context) {
  JAMBA_CHECK(!logits.empty());
  if (params_.repetition_penalty == 1.0f) {
    row_.Process(logits, RowParams());
    return;
  }
  work_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) work_[i] = RankKey(logits[i]);
  ApplyRepetitionPenalty(context);
  row_.Process(work_, RowParams());
}

double Sampler::DrawUniform() { return rng_.NextDouble(); }

SampleResult Sampler::Sample(absl::Span<const float> logits, absl::Span<const int32_t> context) {
  Process(logits, context);
  SampleResult result;
  // Greedy draws nothing; otherwise one draw per call whatever the survivors, so the RNG
  // stream advances in step with the sequence.
  result.token = row_.Draw(params_.temperature == 0.0f ? 0.0 : DrawUniform());
  if (params_.logprobs >= 0) result.logprobs = LogprobsFor(logits, result.token, params_.logprobs);
  return result;
}

std::vector<TokenProb> Sampler::Distribution(absl::Span<const float> logits,
                                             absl::Span<const int32_t> context) {
  Process(logits, context);
  std::vector<TokenProb> out;
  out.reserve(row_.candidates().size());
  for (const RowSampler::Candidate& c : row_.candidates()) {
    out.push_back({c.id, c.weight / row_.total_weight()});
  }
  return out;
}

}  // namespace jamba
