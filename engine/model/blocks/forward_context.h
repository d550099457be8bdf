// What every block's forward needs besides its weights: the backend (device + stream), the
// ragged batch being run, scratch memory and the model's hyper-parameters.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_

#include "engine/config/model_config.h"
#include "engine/model/blocks/expert_dispatcher.h"
#include "engine/model/workspace.h"
#include "kernels/backend.h"

namespace jamba {

// Seconds spent in each kind of block, summed over forwards (see ForwardContext::times).
struct BlockTimes {
  double attention = 0, mamba = 0, mlp = 0, moe = 0;
};

struct ForwardContext {
  Backend* backend = nullptr;
  const BatchLayout* layout = nullptr;
  Workspace* ws = nullptr;
  const ModelConfig* config = nullptr;
  // Computes the experts the shard does not hold; null: every routed expert must be held.
  ExpertDispatcher* experts = nullptr;
  // If set, ForwardLayers adds each block's wall time here, synchronizing the backend around
  // every block (free on the CPU, where ops are synchronous; a cost on a GPU stream).
  BlockTimes* times = nullptr;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_
