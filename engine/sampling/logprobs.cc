#include "engine/sampling/logprobs.h"

#include <cmath>
#include <limits>

#include "common/check.h"
#include "kernels/cpu/top_n.h"

namespace jamba {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log_softmax(logits)[i] = LogNormalizer::Of(logits[i]); computed once per position.
struct LogNormalizer {
  double max = -kInf;
  double log_sum = 0.0;  // log(sum_j exp(logit_j - max)) for finite max
  int64_t num_pos_inf = 0;

  explicit LogNormalizer(absl::Span<const float> logits) {
    for (float v : logits) {
      const double k = RankKey(v);
      if (k > max) max = k;
      if (k == kInf) ++num_pos_inf;
    }
    if (std::isfinite(max)) {
      double sum = 0.0;
      for (float v : logits) sum += std::exp(static_cast<double>(RankKey(v)) - max);
      log_sum = std::log(sum);
    }
  }

  float Of(float logit) const {
    const double k = RankKey(logit);
    if (max == -kInf) return -std::numeric_limits<float>::infinity();
    if (max == kInf) {
      return k == kInf ? static_cast<float>(-std::log(static_cast<double>(num_pos_inf)))
                       : -std::numeric_limits<float>::infinity();
    }
    return static_cast<float>(k - max - log_sum);
  }
};

}  // namespace

TokenLogprob LogprobsFor(absl::Span<const float> logits, int32_t token, int32_t top_n) {
  JAMBA_CHECK(!logits.empty());
  JAMBA_CHECK(token >= 0 && static_cast<size_t>(token) < logits.size());
  const LogNormalizer norm(logits);
  TokenLogprob out;
  out.token = token;
  out.logprob = norm.Of(logits[token]);
  for (int32_t id : TopNIndices(logits, top_n)) out.top.emplace_back(id, norm.Of(logits[id]));
  return out;
}

}  // namespace jamba
