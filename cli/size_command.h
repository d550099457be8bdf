// `jambactl size`: memory sizing of a model and of a cluster layout, from config.json alone
// (engine/runtime/memory_plan.h does the accounting with the engine's own loader).
#ifndef JAMBA_CLI_SIZE_COMMAND_H_
#define JAMBA_CLI_SIZE_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/cluster_plan.h"
#include "engine/config/model_config.h"
#include "engine/runtime/memory_plan.h"

namespace jamba {

// What one process of a layout holds, in bytes.
struct WorkerSize {
  bool expert_worker = false;
  int64_t layer_begin = 0, layer_end = 0;  // layer workers
  int64_t experts = 0;                     // (layer, expert) pairs held
  int64_t weight_bytes = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t mamba_bytes_per_sequence = 0;
  int64_t state_bytes = 0;  // KV for `sequences` x `context` tokens + Mamba for `sequences`
  int64_t total_bytes() const { return weight_bytes + state_bytes; }
};

// Layer workers hold their layers (without the experts when the layout has expert workers),
// the first the embedding and the last the head; expert workers their experts. State: every
// one of `sequences` sequences at `context` tokens (the gateway reserves a request's whole
// KV span at admission).
std::vector<WorkerSize> SizeWorkers(const ModelConfig& config, const MemoryPlan& plan,
                                    const ClusterPlan& layout, int64_t sequences,
                                    int64_t context);

// argv[0] is "size".
int RunSizeCommand(int argc, char** argv);

}  // namespace jamba

#endif  // JAMBA_CLI_SIZE_COMMAND_H_
