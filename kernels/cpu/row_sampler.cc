#include "kernels/cpu/row_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/check.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/top_n.h"

namespace jamba {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
// First prefix length top-p sorts; grown 4x while the kept mass is not reached.
constexpr size_t kTopPFirstChunk = 64;

}  // namespace

void RowSampler::ApplyTopP(float top_p) {
  const double target = static_cast<double>(top_p) * total_weight_;
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

void RowSampler::ApplyMinPAndDropZeros(float min_p) {
  // The most likely survivor has weight exactly 1, so weight is the probability relative to
  // the largest one.
  const double threshold = min_p;
  total_weight_ = 0.0;
  size_t kept = 0;
  for (const Candidate& c : candidates_) {
    if (c.weight > 0.0 && c.weight >= threshold) {
      candidates_[kept++] = c;
      total_weight_ += c.weight;
    }
  }
  candidates_.resize(kept);
}

void RowSampler::Process(absl::Span<const float> logits, const RowSampling& params) {
  JAMBA_CHECK(!logits.empty());
  // Greedy reads no other field (as the host sampler at temperature 0 never did).
  JAMBA_CHECK(params.temperature == 0.0f || RowSamplingValid(params));
  const int32_t vocab = static_cast<int32_t>(logits.size());
  candidates_.clear();

  if (params.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i) {
      if (RankKey(logits[i]) > RankKey(logits[best])) best = i;
    }
    candidates_.push_back({best, RankKey(logits[best]), 1.0});
    total_weight_ = 1.0;
    return;
  }

  // Top-k: the survivors are the pivot (k-th ranked) and everything ranked before it. They
  // are collected in id order, which keeps the draw order independent of the heap's.
  int32_t pivot = -1;
  if (params.top_k > 0 && params.top_k < vocab) pivot = TopNIndices(logits, params.top_k).back();
  float max_logit = kNegInf;
  for (int32_t i = 0; i < vocab; ++i) {
    const float v = RankKey(logits[i]);
    if (v == kNegInf) continue;
    if (pivot >= 0 && i != pivot && !RanksBefore(logits, i, pivot)) continue;
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
  const double inv_t = 1.0 / static_cast<double>(params.temperature);
  total_weight_ = 0.0;
  for (Candidate& c : candidates_) {
    if (max_logit == kPosInf) {
      c.weight = c.logit == kPosInf ? 1.0 : 0.0;
    } else {
      c.weight = std::exp((static_cast<double>(c.logit) - max_logit) * inv_t);
    }
    total_weight_ += c.weight;
  }

  if (params.top_p < 1.0f) ApplyTopP(params.top_p);
  ApplyMinPAndDropZeros(params.min_p);
  JAMBA_CHECK(!candidates_.empty());  // the top candidate has weight 1 > min_p
}

int32_t RowSampler::Draw(double u) const {
  JAMBA_CHECK(!candidates_.empty());
  const double target = u * total_weight_;
  double cumulative = 0.0;
  for (const Candidate& c : candidates_) {
    cumulative += c.weight;
    if (target < cumulative) return c.id;
  }
  return candidates_.back().id;  // rounding left target >= the final sum
}

namespace cpu {

void SampleRows(const Tensor& x, absl::Span<const RowSampling> params, const Tensor& out) {
  JAMBA_CHECK(x.dtype == DType::kF32 && x.ndim == 2 && x.stride[1] == 1);
  JAMBA_CHECK(out.dtype == DType::kI32 && out.numel() == x.dim(0) && out.contiguous());
  JAMBA_CHECK(static_cast<int64_t>(params.size()) == x.dim(0));
  const int64_t n = x.dim(0), v = x.dim(1);
  RowSampler sampler;
  for (int64_t i = 0; i < n; ++i) {
    sampler.Process(absl::MakeConstSpan(x.ptr<float>() + i * x.ld(), v), params[i]);
    out.ptr<int32_t>()[i] = sampler.Draw(params[i].uniform);
  }
}

}  // namespace cpu
}  // namespace jamba
