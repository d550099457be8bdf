#include "engine/runtime/memory_plan.h"

#include <memory>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/model/model.h"
#include "engine/state/kv_cache_pool.h"
#include "engine/state/mamba_state_pool.h"
#include "kernels/backend.h"

namespace jamba {
namespace {

struct Counted {
  int64_t parameters = 0;
  int64_t bytes = 0;
};

// Loads `shard` from a shapes-only checkpoint: nothing is read or allocated, the loader only
// counts. The backend is never called for data (it gives the views their device).
absl::StatusOr<Counted> Count(const ModelConfig& config, DType weight_dtype, bool int8_experts,
                              Backend* backend, const ShardSpec& shard) {
  LoadOptions options;
  options.weight_dtype = weight_dtype;
  options.int8_experts = int8_experts;
  options.shard = shard;
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(Checkpoint::ShapesOnly(config), options, backend));
  return Counted{model->num_parameters(), model->weight_bytes()};
}

}  // namespace

int64_t MemoryPlan::LayerBytes(int64_t begin, int64_t end, bool with_experts) const {
  int64_t total = 0;
  for (int64_t i = begin; i < end; ++i) {
    total += layers[i].bytes - (with_experts ? 0 : layers[i].expert_bytes);
  }
  return total;
}

int64_t MemoryPlan::KvBytesPerToken(int64_t begin, int64_t end) const {
  int64_t total = 0;
  for (int64_t i = begin; i < end; ++i) total += layers[i].kv_bytes_per_token;
  return total;
}

int64_t MemoryPlan::MambaBytesPerSequence(int64_t begin, int64_t end) const {
  int64_t total = 0;
  for (int64_t i = begin; i < end; ++i) total += layers[i].mamba_bytes_per_sequence;
  return total;
}

absl::StatusOr<MemoryPlan> PlanMemory(const ModelConfig& config, DType weight_dtype,
                                      bool int8_experts) {
  if (weight_dtype != DType::kBF16 && weight_dtype != DType::kF32) {
    return absl::InvalidArgumentError("weight dtype must be bf16 or f32");
  }
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  MemoryPlan plan;
  plan.weight_dtype = weight_dtype;
  plan.int8_experts = int8_experts;

  // Embedding, final norm and LM head alone: an empty layer range, with each part asked for.
  auto globals = [&](bool embedding, bool head) {
    ShardSpec shard;
    shard.layer_begin = 0;
    shard.layer_end = 0;
    shard.embedding = embedding;
    shard.head = head;
    return Count(config, weight_dtype, int8_experts, backend.get(), shard);
  };
  JAMBA_ASSIGN_OR_RETURN(const Counted both, globals(true, true));
  JAMBA_ASSIGN_OR_RETURN(const Counted embedding, globals(true, false));
  JAMBA_ASSIGN_OR_RETURN(const Counted head, globals(false, true));
  plan.globals_parameters = both.parameters;
  plan.globals_bytes = both.bytes;
  plan.embedding_bytes = embedding.bytes;
  plan.head_bytes = head.bytes;
  plan.parameters = both.parameters;
  plan.weight_bytes = both.bytes;
  plan.active_parameters = both.parameters;

  for (int64_t i = 0; i < config.num_layers; ++i) {
    LayerFootprint f;
    f.spec = config.layers[i];
    ShardSpec layer;
    layer.layer_begin = i;
    layer.layer_end = i + 1;
    layer.embedding = false;
    layer.head = false;
    JAMBA_ASSIGN_OR_RETURN(const Counted all,
                           Count(config, weight_dtype, int8_experts, backend.get(), layer));
    f.parameters = all.parameters;
    f.bytes = all.bytes;
    int64_t active = all.parameters;
    if (f.spec.ffn == FfnKind::kMoe) {
      layer.experts_only = true;
      JAMBA_ASSIGN_OR_RETURN(const Counted experts,
                             Count(config, weight_dtype, int8_experts, backend.get(), layer));
      f.expert_parameters = experts.parameters;
      f.expert_bytes = experts.bytes;
      // Every expert of a layer has the same shapes: a token uses k of E of them.
      active -= experts.parameters / config.num_experts *
                (config.num_experts - config.num_experts_per_tok);
    }
    if (f.spec.mixer == MixerKind::kAttention) {
      f.kv_bytes_per_token = KvCachePool::TokenBytes(1, config.num_kv_heads, config.head_dim);
    } else {
      f.mamba_bytes_per_sequence = MambaStatePool::SequenceBytes(
          1, config.mamba_d_inner, config.mamba_d_state, config.mamba_d_conv);
    }
    plan.parameters += f.parameters;
    plan.weight_bytes += f.bytes;
    plan.expert_parameters += f.expert_parameters;
    plan.expert_bytes += f.expert_bytes;
    plan.active_parameters += active;
    plan.kv_bytes_per_token += f.kv_bytes_per_token;
    plan.mamba_bytes_per_sequence += f.mamba_bytes_per_sequence;
    plan.layers.push_back(f);
  }
  return plan;
}

}  // namespace jamba
