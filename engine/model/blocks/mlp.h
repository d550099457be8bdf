// The SwiGLU feed-forward: down(silu(gate x) * up x). Used for Jamba's dense layers and for
// every expert of an MoE layer (Jamba gate/up/down_proj, Mixtral w1/w3/w2).
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_MLP_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_MLP_H_

#include <string>

#include "absl/status/status.h"
#include "engine/model/blocks/forward_context.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_loader.h"

namespace jamba {

// Loads three separate matrices: gate [I, H], up [I, H], down [H, I] (full tensor names).
// `expert`: an MoE expert's, loaded in the loader's expert dtype (possibly int8).
absl::Status LoadMlp(WeightLoader& loader, const std::string& gate, const std::string& up,
                     const std::string& down, int64_t inter, int64_t hidden, MlpWeights* out,
                     bool expert = false);

// x: [n, H] f32; out: [n, H] f32 (overwritten).
void MlpForward(const ForwardContext& ctx, const MlpWeights& w, const Tensor& x,
                const Tensor& out);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_MLP_H_
