// A SequenceExecutor over a whole-model Stage in the gateway's own process: single-process
// serving (jamba-gateway without layer workers) and scheduler tests without a cluster.
#ifndef JAMBA_GATEWAY_LOCAL_EXECUTOR_H_
#define JAMBA_GATEWAY_LOCAL_EXECUTOR_H_

#include <memory>

#include "absl/synchronization/mutex.h"
#include "gateway/executor.h"
#include "kernels/cpu_threads.h"

namespace jamba {

class LocalExecutor final : public SequenceExecutor {
 public:
  // `stage` must hold the whole model (embedding, all layers, head).
  LocalExecutor(std::unique_ptr<Backend> backend, std::unique_ptr<Stage> stage)
      : backend_(std::move(backend)), stage_(std::move(stage)) {}

  ExecutorLimits limits() const override {
    absl::MutexLock lock(&mu_);
    const StageStats s = stage_->Stats();
    ExecutorLimits l;
    l.max_sequences = s.max_sequences;
    l.kv_blocks = s.kv_blocks_total > 0 ? s.kv_blocks_total : -1;
    l.kv_block_size = s.kv_block_size;
    l.max_context = stage_->max_context();
    return l;
  }
  absl::Status Create(absl::Span<const SequenceId> ids,
                      absl::Span<const int64_t> reserve_tokens = {}) override {
    absl::MutexLock lock(&mu_);
    return stage_->AddSequences(ids, reserve_tokens);
  }
  absl::Status Release(absl::Span<const SequenceId> ids) override {
    absl::MutexLock lock(&mu_);
    stage_->RemoveSequences(ids);
    return absl::OkStatus();
  }
  absl::StatusOr<StepOutput> Forward(absl::Span<const StageItem> items,
                                     absl::Span<const int32_t> token_ids) override {
    absl::MutexLock lock(&mu_);
    AdoptCpuThreads();  // the scheduler's thread starts from OpenMP's default
    StageInput input;
    input.token_ids = token_ids;
    absl::StatusOr<StageOutput> out = stage_->Forward(items, input);
    if (!out.ok()) return out.status();
    return std::move(out->logits);
  }
  StageStats Stats() const {
    absl::MutexLock lock(&mu_);
    return stage_->Stats();
  }

 private:
  std::unique_ptr<Backend> backend_;
  mutable absl::Mutex mu_;
  std::unique_ptr<Stage> stage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_LOCAL_EXECUTOR_H_
