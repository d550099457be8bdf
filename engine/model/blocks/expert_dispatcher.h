// How a layer shard reaches experts it does not hold. In the cluster a layer worker loads only
// the routers of its MoE layers and hands the routed tokens of the other experts to an
// ExpertDispatcher, which sends them to the expert workers holding them (layer-worker/
// remote_experts.h). The combine with the routing weights stays in MoeForward, in ascending
// expert id, so outputs do not depend on which replica answered or in what order.
#ifndef JAMBA_ENGINE_MODEL_BLOCKS_EXPERT_DISPATCHER_H_
#define JAMBA_ENGINE_MODEL_BLOCKS_EXPERT_DISPATCHER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace jamba {

// The tokens of one MoE layer step routed to one expert, on the host.
struct ExpertWork {
  int32_t expert = 0;
  int64_t rows = 0;
  const float* x = nullptr;  // [rows, hidden] f32, normalised activations; owned by the caller
  float* y = nullptr;        // [rows, hidden] f32, receives the expert's MLP output, unscaled
};

class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  // Computes every item of `work` (distinct experts of MoE layer `layer`) before returning.
  // Implementations may run the items in any order and in parallel. An error leaves the `y`
  // buffers unspecified; the caller fails the step.
  virtual absl::Status Compute(int64_t layer, absl::Span<const ExpertWork> work) = 0;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_BLOCKS_EXPERT_DISPATCHER_H_
