// Sparse mixture-of-experts feed-forward (Jamba: top-k of a softmax over all experts, not
// renormalised; Mixtral: renormalised), model_math.md 1.9 and 3.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "engine/model/blocks/forward_context.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_loader.h"

namespace jamba {

// Tensor names of one MoE layer in both checkpoint layouts.
struct MoeNames {
  std::string router;         // [E, H]
  std::string expert_prefix;  // per-expert layout: <expert_prefix><e>.<gate|up|down>.weight
  std::string gate, up, down;
  std::string fused_gate_up;  // stacked layout: [E, 2I, H], gate rows first
  std::string fused_down;     // stacked layout: [E, H, I]
};

// Loads the router and the experts for which `want_expert(e)` is true (all if it is empty),
// from whichever layout the checkpoint has. Experts not wanted are never read.
absl::Status LoadMoe(WeightLoader& loader, const ModelConfig& config, const MoeNames& names,
                     const std::function<bool(int64_t)>& want_expert, MoeWeights* out);

// Only the experts (no router), for expert workers.
absl::Status LoadExperts(WeightLoader& loader, const ModelConfig& config, const MoeNames& names,
                         const std::function<bool(int64_t)>& want_expert, MoeWeights* out);

// x: [n, H] f32 (normalised); out: [n, H] f32 (overwritten). Each token's expert outputs are
// added in ascending expert id, as transformers does, so results do not depend on routing rank.
void MoeForward(const ForwardContext& ctx, const MoeWeights& w, const Tensor& x,
                const Tensor& out);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_
