// Memory accounting of a model from its config alone: parameters and weight bytes per layer,
// per layer kind and for the experts, KV bytes per token and Mamba bytes per sequence. Nothing
// here has its own formula for weights: the plan loads the model through the engine's real
// loader (Model::Load with a shapes-only checkpoint, engine/checkpoint/checkpoint.h), so it
// counts exactly what a worker would hold; the state sizes come from the pools' own functions.
// Used by `jambactl size` and deploy/README.md's sizing tables.
#ifndef JAMBA_ENGINE_RUNTIME_MEMORY_PLAN_H_
#define JAMBA_ENGINE_RUNTIME_MEMORY_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"
#include "kernels/dtype.h"

namespace jamba {

struct LayerFootprint {
  LayerSpec spec;
  int64_t parameters = 0;         // everything of the layer, experts included
  int64_t bytes = 0;              // at the plan's weight dtype (norms and small vectors f32)
  int64_t expert_parameters = 0;  // of all the layer's experts (0 unless MoE)
  int64_t expert_bytes = 0;
  int64_t kv_bytes_per_token = 0;        // attention layers: K + V of one position
  int64_t mamba_bytes_per_sequence = 0;  // Mamba layers: conv window + SSM state
};

struct MemoryPlan {
  DType weight_dtype = DType::kBF16;
  bool int8_experts = false;
  std::vector<LayerFootprint> layers;  // one per model layer, in order
  // Embedding, final norm and LM head of the whole model (a tied matrix counted once).
  int64_t globals_parameters = 0;
  int64_t globals_bytes = 0;
  // What the first stage adds for embedding token ids, and the last one for the final norm
  // and LM head. With tied embeddings both hold the matrix, so these can add up to more than
  // globals_bytes.
  int64_t embedding_bytes = 0;
  int64_t head_bytes = 0;

  // Totals over the whole model.
  int64_t parameters = 0;
  int64_t weight_bytes = 0;
  int64_t expert_parameters = 0;
  int64_t expert_bytes = 0;
  // Parameters one token is multiplied with: every expert-free weight plus k of E experts of
  // each MoE layer (the embedding counted once, as published "active parameter" figures do).
  int64_t active_parameters = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t mamba_bytes_per_sequence = 0;

  // Parameters and weight bytes of layers [begin, end), experts included or not.
  int64_t LayerBytes(int64_t begin, int64_t end, bool with_experts) const;
  int64_t KvBytesPerToken(int64_t begin, int64_t end) const;
  int64_t MambaBytesPerSequence(int64_t begin, int64_t end) const;
};

// `weight_dtype`: kBF16 or kF32, the dtype of large matrices (LoadOptions::weight_dtype);
// `int8_experts`: LoadOptions::int8_experts (int8 expert matrices plus f32 row scales).
// Errors: those of the architecture's loader for an inconsistent config.
absl::StatusOr<MemoryPlan> PlanMemory(const ModelConfig& config, DType weight_dtype,
                                      bool int8_experts = false);

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_MEMORY_PLAN_H_
