// Multi-head self-attention with GQA over the paged KV cache (Jamba: no positional encoding;
// Mixtral: RoPE on q and k), model_math.md 1.8 and 3.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_ATTENTION_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_ATTENTION_H_

#include <string>

#include "absl/status/status.h"
#include "engine/model/blocks/forward_context.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_loader.h"

namespace jamba {

// Loads `<prefix>{q,k,v,o}_proj.weight` (no biases in any supported family).
absl::Status LoadAttention(WeightLoader& loader, const ModelConfig& config,
                           const std::string& prefix, AttentionWeights* out);

// x: [n, H] f32 (normalised); out: [n, H] f32; k_cache/v_cache: this layer's pools.
void AttentionForward(const ForwardContext& ctx, const AttentionWeights& w, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& x, const Tensor& out);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_ATTENTION_H_
