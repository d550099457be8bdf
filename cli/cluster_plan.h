// How `jambactl cluster up` lays a model out over processes: contiguous layer ranges for the
// layer workers, balanced by the work each does per token (so that no stage of the pipeline
// holds the others back: the head, for one, weighs as much as several layers of a small
// model), and every (MoE layer, expert) pair on `replicas` expert workers, dealt round-robin
// so each worker holds a near-equal share and replicas of one expert sit on distinct workers.
// Kept apart from the process handling so it can be tested.
#ifndef JAMBA_CLI_CLUSTER_PLAN_H_
#define JAMBA_CLI_CLUSTER_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"

namespace jamba {

struct ClusterPlan {
  std::vector<std::pair<int64_t, int64_t>> layer_ranges;  // [begin, end) per stage
  int32_t pipelines = 1;  // full sets of those stages, sharing the expert workers
  // Per expert worker: the experts it holds, MoE layer -> expert ids (ascending).
  std::vector<std::map<int64_t, std::vector<int64_t>>> expert_layers;
  // The same as each worker's --experts spec ("LAYER:E,E;LAYER:E").
  std::vector<std::string> expert_specs;
  // Each worker's --device ("cpu" from PlanCluster; AssignDevices sets them).
  std::vector<std::string> expert_devices;
  std::vector<std::string> layer_devices;  // pipeline-major: pipeline p's stage i at p * stages + i
};

// Multiply-adds per token a layer worker spends on layer `layer` of `config`: its mixer's
// projections (and the Mamba scan), its dense MLP or MoE router, the top-k experts only when
// `experts_local` (otherwise expert workers compute them), and the final norm + LM head when
// it is the last layer.
double LayerWorkerCost(const ModelConfig& config, int64_t layer, bool experts_local);

// Contiguous ranges of [0, costs.size()) for `parts` stages, each non-empty, minimising the
// largest sum of costs in a range.
std::vector<std::pair<int64_t, int64_t>> BalancedRanges(const std::vector<double>& costs,
                                                        int64_t parts);

// `layer_workers` stages per pipeline. InvalidArgument when the counts do not fit the model
// (more layer workers than layers, pipelines < 1,
// replicas outside [1, expert_workers], more expert workers than expert replicas to hold, or
// expert workers for a model without experts).
absl::StatusOr<ClusterPlan> PlanCluster(const ModelConfig& config, int32_t layer_workers,
                                        int32_t expert_workers, int32_t replicas,
                                        int32_t pipelines = 1);

// Deals `devices` (names as --device takes them; at least one) to the workers round-robin in
// start order: expert worker i gets devices[i % n], layer worker j devices[(E + j) % n] with E
// expert workers. So W workers on a list of W GPUs get one GPU each, and a single device is
// every worker's.
void AssignDevices(const std::vector<std::string>& devices, ClusterPlan* plan);

}  // namespace jamba

#endif  // JAMBA_CLI_CLUSTER_PLAN_H_
