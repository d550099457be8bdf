#include "engine/sampling/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "common/check.h"
#include "engine/sampling/top_n.h"

namespace jamba {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
// First prefix length top-p sorts; grown 4x while the kept mass is not reached.
constexpr size_t kTopPFirstChunk = 64;

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

void Sampler::ApplyTopP() {
  const double target = static_cast<double>(params_.top_p) * total_weight_;
  auto ranks_before = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  const size_t n = candidates_.size();
  size_t sorted = 0;
  size_t chunk_end = std::min(n, kTopPFirstChunk);
  double cumulative = 0.0;
  while (true) {
    // Candidates past `sorted` all rank after the sorted prefix, so extending the prefix
    // only needs a partial sort of the rest.
    std::partial_sort(candidates_.begin() + sorted, candidates_.begin() + chunk_end,
                      candidates_.end(), ranks_before);
    for (; sorted < chunk_end; ++sorted) {
      cumulative += candidates_[sorted].weight;
      if (cumulative >= target) {
        candidates_.resize(sorted + 1);
        return;
      }
    }
    if (chunk_end == n) return;  // rounding kept the sum just below target: keep all
    chunk_end = std::min(n, chunk_end * 4);
  }
}

void Sampler::ApplyMinPAndDropZeros() {
  // The most likely survivor has weight exactly 1, so weight is the probability relative to
  // the largest one.
  const double min_p = params_.min_p;
  total_weight_ = 0.0;
  size_t kept = 0;
  for (const Candidate& c : candidates_) {
    if (c.weight > 0.0 && c.weight >= min_p) {
      candidates_[kept++] = c;
      total_weight_ += c.weight;
    }
  }
  candidates_.resize(kept);
}

void Sampler::Process(absl::Span<const float> logits, absl::Span<const int32_t> context) {
  JAMBA_CHECK(!logits.empty());
  const int32_t vocab = static_cast<int32_t>(logits.size());
  work_.resize(logits.size());
  for (int32_t i = 0; i < vocab; ++i) work_[i] = RankKey(logits[i]);
  if (params_.repetition_penalty != 1.0f) ApplyRepetitionPenalty(context);
  candidates_.clear();

  if (params_.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i) {
      if (work_[i] > work_[best]) best = i;
    }
    candidates_.push_back({best, work_[best], 1.0});
    total_weight_ = 1.0;
    return;
  }

  // Top-k: the survivors are the pivot (k-th ranked) and everything ranked before it. They
  // are collected in id order, which keeps the draw order independent of the heap's.
  int32_t pivot = -1;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    pivot = TopNIndices(work_, params_.top_k).back();
  }
  const absl::Span<const float> work(work_);
  float max_logit = kNegInf;
  for (int32_t i = 0; i < vocab; ++i) {
    const float v = work_[i];
    if (v == kNegInf) continue;
    if (pivot >= 0 && i != pivot && !RanksBefore(work, i, pivot)) continue;
    candidates_.push_back({i, v, 0.0});
    max_logit = std::max(max_logit, v);
  }
  if (candidates_.empty()) {  // every logit is -inf
    candidates_.push_back({0, kNegInf, 1.0});
    total_weight_ = 1.0;
    return;
  }

  // Temperature and the unnormalised softmax. Subtracting the max before dividing by T keeps
  // every exponent <= 0, so no temperature, however small, overflows.
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  total_weight_ = 0.0;
  for (Candidate& c : candidates_) {
    if (max_logit == kPosInf) {
      c.weight = c.logit == kPosInf ? 1.0 : 0.0;
    } else {
      c.weight = std::exp((static_cast<double>(c.logit) - max_logit) * inv_t);
    }
    total_weight_ += c.weight;
  }

  if (params_.top_p < 1.0f) ApplyTopP();
  ApplyMinPAndDropZeros();
  JAMBA_CHECK(!candidates_.empty());  // the top candidate has weight 1 > min_p
}

SampleResult Sampler::Sample(absl::Span<const float> logits, absl::Span<const int32_t> context) {
  Process(logits, context);
  SampleResult result;
  if (params_.temperature == 0.0f) {
    result.token = candidates_.front().id;
  } else {
    // One draw per call whatever the survivors, so the RNG stream advances in step with the
    // sequence.
    const double u = rng_.NextDouble() * total_weight_;
    double cumulative = 0.0;
    result.token = candidates_.back().id;  // if rounding leaves u >= the final sum
    for (const Candidate& c : candidates_) {
      cumulative += c.weight;
      if (u < cumulative) {
        result.token = c.id;
        break;
      }
    }
  }
  if (params_.logprobs >= 0) result.logprobs = LogprobsFor(logits, result.token, params_.logprobs);
  return result;
}

std::vector<TokenProb> Sampler::Distribution(absl::Span<const float> logits,
                                             absl::Span<const int32_t> context) {
  Process(logits, context);
  std::vector<TokenProb> out;
  out.reserve(candidates_.size());
  for (const Candidate& c : candidates_) out.push_back({c.id, c.weight / total_weight_});
  return out;
}

}  // namespace jamba
