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

// MoE layer `layer`: x: [n, H] f32 (normalised); out: [n, H] f32 (overwritten). Experts the
// shard does not hold go to ctx.experts. Each token's expert outputs are added in ascending
// expert id, as transformers does, so results depend neither on routing rank nor on where an
// expert ran. Errors: the dispatcher's, or FailedPrecondition when a token is routed to an
// expert that is neither held nor reachable.
absl::Status MoeForward(const ForwardContext& ctx, int64_t layer, const MoeWeights& w,
                        const Tensor& x, const Tensor& out);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_
