#include "cli/cluster_plan.h"

#include <algorithm>
#include <limits>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"

namespace jamba {

// The CPU backend's selective scan per state element and token, in multiply-adds of its dot
// kernel: measured on the 282M benchmark model of the README (jamba-bench --threads 1, decode
// at batch 16, perf: the scan, its exp and softplus take a third of the matrix products' time),
// and checked by jamba-cluster-bench, where this weight gives its two stages equal busy time.
constexpr double kScanCost = 300;

double LayerWorkerCost(const ModelConfig& c, int64_t layer, bool experts_local) {
  const double h = static_cast<double>(c.hidden_size);
  const LayerSpec& spec = c.layers[layer];
  double cost = 0;
  if (spec.mixer == MixerKind::kAttention) {
    const double q = static_cast<double>(c.num_heads * c.head_dim);
    const double kv = static_cast<double>(c.num_kv_heads * c.head_dim);
    cost += h * q + 2 * h * kv + q * h;
  } else {
    const double di = static_cast<double>(c.mamba_d_inner),
                 n = static_cast<double>(c.mamba_d_state);
    const double r = static_cast<double>(c.mamba_dt_rank);
    // in_proj, conv, x_proj, dt_proj, out_proj, and the selective scan with its exp per state
    // element and softplus, weighed as kScanCost multiply-adds per state element.
    cost += h * 2 * di + di * static_cast<double>(c.mamba_d_conv) + di * (r + 2 * n) + r * di +
            di * h + kScanCost * di * n;
  }
  const double mlp = 3 * h * static_cast<double>(c.intermediate_size);
  if (spec.ffn == FfnKind::kDense) cost += mlp;
  if (spec.ffn == FfnKind::kMoe) {
    cost += h * static_cast<double>(c.num_experts);
    if (experts_local) cost += static_cast<double>(c.num_experts_per_tok) * mlp;
  }
  if (layer + 1 == c.num_layers) cost += h * static_cast<double>(c.vocab_size);
  return cost;
}

std::vector<std::pair<int64_t, int64_t>> BalancedRanges(const std::vector<double>& costs,
                                                        int64_t parts) {
  const int64_t n = static_cast<int64_t>(costs.size());
  JAMBA_CHECK(parts >= 1 && parts <= n);
  std::vector<double> prefix(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
  // best[p][i]: the smallest largest range over the first i layers in p ranges; cut[p][i]:
  // where the last of those ranges begins. Ties go to the later cut, which leaves the earlier
  // stages the larger share.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(parts + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int64_t>> cut(parts + 1, std::vector<int64_t>(n + 1, 0));
  best[0][0] = 0;
  for (int64_t p = 1; p <= parts; ++p) {
    for (int64_t i = p; i <= n; ++i) {
      for (int64_t j = p - 1; j < i; ++j) {
        const double v = std::max(best[p - 1][j], prefix[i] - prefix[j]);
        if (v <= best[p][i]) {
          best[p][i] = v;
          cut[p][i] = j;
        }
      }
    }
  }
  std::vector<std::pair<int64_t, int64_t>> ranges(parts);
  for (int64_t p = parts, i = n; p >= 1; --p) {
    ranges[p - 1] = {cut[p][i], i};
    i = cut[p][i];
  }
  return ranges;
}

absl::StatusOr<ClusterPlan> PlanCluster(const ModelConfig& c, int32_t layer_workers,
                                        int32_t expert_workers, int32_t replicas,
                                        int32_t pipelines) {
  if (pipelines < 1 || pipelines > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipelines must be in [1, 64], got ", pipelines));
  }
  if (layer_workers < 1 || layer_workers > c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer-workers must be in [1, ", c.num_layers,
                                                   "] (the model's layers), got ", layer_workers));
  }
  if (expert_workers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert-workers must be >= 0, got ", expert_workers));
  }
  ClusterPlan plan;
  std::vector<double> costs;
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    costs.push_back(LayerWorkerCost(c, layer, /*experts_local=*/expert_workers == 0));
  }
  plan.layer_ranges = BalancedRanges(costs, layer_workers);
  plan.pipelines = pipelines;
  plan.layer_devices.assign(plan.layer_ranges.size() * pipelines, "cpu");
  if (expert_workers == 0) return plan;
  const int64_t pairs = c.NumMoeLayers() * c.num_experts;
  if (pairs == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert-workers: this ", ArchitectureName(c.arch), " model has no MoE experts"));
  }
  if (replicas < 1 || replicas > expert_workers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replicas must be in [1, expert-workers = ", expert_workers, "], got ", replicas));
  }
  if (pairs * replicas < expert_workers) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert-workers: ", expert_workers, " workers but only ", pairs * replicas,
                     " expert replicas to hold; some worker would be idle"));
  }
  std::vector<std::map<int64_t, std::vector<int64_t>>>& held = plan.expert_layers;
  held.resize(expert_workers);
  int64_t k = 0;
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    if (c.layers[layer].ffn != FfnKind::kMoe) continue;
    for (int64_t e = 0; e < c.num_experts; ++e, ++k) {
      for (int32_t r = 0; r < replicas; ++r) held[(k + r) % expert_workers][layer].push_back(e);
    }
  }
  for (const auto& worker : held) {
    std::vector<std::string> layers;
    for (const auto& [layer, experts] : worker) {
      layers.push_back(absl::StrCat(layer, ":", absl::StrJoin(experts, ",")));
    }
    plan.expert_specs.push_back(absl::StrJoin(layers, ";"));
  }
  plan.expert_devices.assign(plan.expert_specs.size(), "cpu");
  return plan;
}

void AssignDevices(const std::vector<std::string>& devices, ClusterPlan* plan) {
  JAMBA_CHECK(!devices.empty());
  size_t next = 0;
  for (std::string& d : plan->expert_devices) d = devices[next++ % devices.size()];
  for (std::string& d : plan->layer_devices) d = devices[next++ % devices.size()];
}

}  // namespace jamba
