// Per-architecture declarations: which checkpoint tensor feeds which block. Each supported
// model family is one small file (jamba.cc, mamba.cc, mixtral.cc) built from the shared blocks
// in engine/model/blocks; the layer schedule itself comes from ModelConfig::layers.
#ifndef JAMBA_ENGINE_MODEL_ARCH_ARCHITECTURE_H_
#define JAMBA_ENGINE_MODEL_ARCH_ARCHITECTURE_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/model/blocks/moe.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_loader.h"

namespace jamba {

using ExpertFilter = std::function<bool(int64_t expert)>;  // empty: every expert

struct ArchitectureSpec {
  // Fixes config values that the checkpoint's tensors decide (e.g. FalconMamba's Di).
  absl::Status (*resolve_config)(Checkpoint& checkpoint, ModelConfig* config);
  // Embedding, final norm and LM head (each only if asked for).
  absl::Status (*load_globals)(WeightLoader& loader, const ModelConfig& config, bool embedding,
                               bool head, ModelWeights* out);
  // Everything of layer `layer` (index in the full model).
  absl::Status (*load_layer)(WeightLoader& loader, const ModelConfig& config, int64_t layer,
                             const ExpertFilter& want_expert, LayerWeights* out);
  // Tensor names of MoE layer `layer` (null for families without MoE); expert workers load
  // just the experts through it.
  MoeNames (*moe_names)(const WeightLoader& loader, int64_t layer);
};

const ArchitectureSpec& JambaArchitecture();
const ArchitectureSpec& MambaArchitecture();  // Mamba and FalconMamba
const ArchitectureSpec& MixtralArchitecture();
const ArchitectureSpec& ArchitectureFor(Architecture arch);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_ARCH_ARCHITECTURE_H_
