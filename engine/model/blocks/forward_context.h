// What every block's forward needs besides its weights: the backend (device + stream), the
// ragged batch being run, scratch memory and the model's hyper-parameters.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_

#include "engine/config/model_config.h"
#include "engine/model/blocks/expert_dispatcher.h"
#include "engine/model/workspace.h"
#include "kernels/backend.h"

namespace jamba {

struct ForwardContext {
  Backend* backend = nullptr;
  const BatchLayout* layout = nullptr;
  Workspace* ws = nullptr;
  const ModelConfig* config = nullptr;
  // Computes the experts the shard does not hold; null: every routed expert must be held.
  ExpertDispatcher* experts = nullptr;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_FORWARD_CONTEXT_H_
