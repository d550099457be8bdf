// Sparse mixture-of-experts feed-forward (Jamba: top-k of a softmax over all experts, not
// renormalised; Mixtral: renormalised), model_math.md 1.9 and 3.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_

#include <functional>
#include <string>
#include <vector>

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

// An MoE layer split where it waits for expert workers, so that a caller can run other work
// (another micro-batch's layers) meanwhile: MoeBegin routes, groups and computes the held
// experts, and leaves the rows of the others in `work` (host buffers owned by the
// MoePending); the caller has them computed (ExpertDispatcher::Compute, on any thread) and
// calls MoeFinish, which combines. MoeForward is the three in a row. Between the two calls
// the device tensors in MoePending must stay valid (the workspace is not reset) and nothing
// else may write them.
struct MoePending {
  int64_t layer = 0;
  std::vector<ExpertWork> work;  // remote experts, ascending expert id; empty: nothing to wait
  std::vector<float> remote_x;   // [remote rows, H] f32, the work items' x, back to back
  std::vector<float> remote_y;   // [remote rows, H] f32, the work items' y
  std::vector<int64_t> offset;   // per expert: its first row in yg
  Tensor yg, token, scale, out;  // device: grouped outputs [n*k, H], slots, scales, result
  bool finished = false;         // MoeBegin already combined (no remote experts)
};

absl::Status MoeBegin(const ForwardContext& ctx, int64_t layer, const MoeWeights& w,
                      const Tensor& x, const Tensor& out, MoePending* pending);
absl::Status MoeFinish(const ForwardContext& ctx, MoePending* pending);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_MOE_H_
