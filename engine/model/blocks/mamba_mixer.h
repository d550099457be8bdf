// The Mamba selective-SSM mixer shared by Jamba, Mamba and FalconMamba (model_math.md 1.6,
// 2.5). The three differ only in the inner dt/B/C norms, selected by config.mamba_inner_norm.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_MAMBA_MIXER_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_MAMBA_MIXER_H_

#include <string>

#include "absl/status/status.h"
#include "engine/model/blocks/forward_context.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_loader.h"

namespace jamba {

// Loads `<prefix>in_proj.weight`, `conv1d.weight`, ... (names shared by all three families;
// Jamba adds dt_layernorm / b_layernorm / c_layernorm).
absl::Status LoadMambaMixer(WeightLoader& loader, const ModelConfig& config,
                            const std::string& prefix, MambaMixerWeights* out);

// x: [n, H] f32 (already normalised); out: [n, H] f32. conv_state [slots, Di, K-1] and
// ssm_state [slots, Di, N] are this layer's pools.
void MambaMixerForward(const ForwardContext& ctx, const MambaMixerWeights& w,
                       const Tensor& conv_state, const Tensor& ssm_state, const Tensor& x,
                       const Tensor& out);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_MAMBA_MIXER_H_
