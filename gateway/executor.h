// Where the gateway's scheduler runs its forward passes: a pipeline of layer workers
// (gateway/pipeline.h) or, for single-process serving and tests, a local whole-model Stage
// (gateway/local_executor.h). Sequence ids are the scheduler's; the executor creates the same
// id on every stage.
#ifndef JAMBA_GATEWAY_EXECUTOR_H_
#define JAMBA_GATEWAY_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/runtime/stage.h"

namespace jamba {

// Capacity the scheduler plans with: every stage can hold `max_sequences` live sequences and
// `kv_blocks` KV blocks of `kv_block_size` positions (the tightest stage decides).
struct ExecutorLimits {
  int32_t max_sequences = 0;
  int64_t kv_blocks = -1;  // -1: no attention layers, KV is no constraint
  int32_t kv_block_size = 0;
  int64_t max_context = 0;
};

class SequenceExecutor {
 public:
  virtual ~SequenceExecutor() = default;

  virtual ExecutorLimits limits() const = 0;
  // Creates the sequences on every stage; all or nothing. `reserve_tokens` (empty or one per
  // id): KV positions each stage sets aside for the sequence's life; ResourceExhausted when a
  // stage lacks the room (other gateways hold it): wait and retry.
  virtual absl::Status Create(absl::Span<const SequenceId> ids,
                              absl::Span<const int64_t> reserve_tokens = {}) = 0;
  // Frees the sequences on every stage; unknown ids are ignored. Best effort: a stage that
  // cannot be reached is reported, the others are still released.
  virtual absl::Status Release(absl::Span<const SequenceId> ids) = 0;
  // One forward of a ragged batch: items with n_past set, token_ids [sum n_tokens] i32.
  virtual absl::StatusOr<StepOutput> Forward(absl::Span<const StageItem> items,
                                             absl::Span<const int32_t> token_ids) = 0;

  using ForwardDone = std::function<void(absl::StatusOr<StepOutput>)>;
  // Starts a forward and returns; `done` is called exactly once with its result, on any
  // thread (possibly before ForwardAsync returns). Several may be in flight, on disjoint
  // sequences: the scheduler's pipeline depth. The default runs Forward inline.
  virtual void ForwardAsync(std::vector<StageItem> items, std::vector<int32_t> token_ids,
                            ForwardDone done) {
    done(Forward(items, token_ids));
  }
  // Batches in flight at once that keep every stage busy (the scheduler's default depth).
  virtual int32_t DefaultDepth() const { return 1; }
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_EXECUTOR_H_
