#include "cli/cluster_plan.h"

#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"

namespace jamba {

absl::StatusOr<ClusterPlan> PlanCluster(const ModelConfig& c, int32_t layer_workers,
                                        int32_t expert_workers, int32_t replicas) {
  if (layer_workers < 1 || layer_workers > c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer-workers must be in [1, ", c.num_layers,
                                                   "] (the model's layers), got ", layer_workers));
  }
  if (expert_workers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert-workers must be >= 0, got ", expert_workers));
  }
  ClusterPlan plan;
  for (int64_t w = 0; w < layer_workers; ++w) {
    plan.layer_ranges.emplace_back(w * c.num_layers / layer_workers,
                                   (w + 1) * c.num_layers / layer_workers);
  }
  plan.layer_devices.assign(plan.layer_ranges.size(), "cpu");
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
