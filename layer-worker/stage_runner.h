// Runs a layer worker's Stage for many concurrent callers: one compute thread drives the Stage
// (the backend is one stream; an OpenMP team stays with one thread), and a batch whose MoE
// layer waits for expert workers hands the wait to a waiter thread, so the compute thread runs
// another batch's layers meanwhile. Batches arrive from the gateway's pipeline (several in
// flight) and from the micro-batches a layer worker splits each batch into; while one's
// experts compute on the expert workers, another's attention/Mamba layers run here
// (MegaScale-Infer's ping-pong). Batches touch disjoint sequences and every kernel is
// batch-invariant, so the interleaving changes no result.
#ifndef JAMBA_LAYER_WORKER_STAGE_RUNNER_H_
#define JAMBA_LAYER_WORKER_STAGE_RUNNER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/model/blocks/expert_dispatcher.h"
#include "engine/runtime/stage.h"

namespace jamba {

class StageRunner {
 public:
  using Done = std::function<void(absl::StatusOr<StageOutput>)>;

  // `experts` computes the waits (may be null when the stage holds every expert). Both must
  // outlive the runner.
  StageRunner(Stage* stage, ExpertDispatcher* experts);
  // Waits for the batches in progress to end.
  ~StageRunner();

  // Queues a batch. `input` must stay valid until `done` is called; `done` is called exactly
  // once, on the compute or a waiter thread, with Stage::Forward's result. Thread-safe.
  void Submit(std::vector<StageItem> items, StageInput input, Done done);
  // Submit, waiting for the result.
  absl::StatusOr<StageOutput> Forward(std::vector<StageItem> items, StageInput input);

  // Runs `fn` on the stage between batch steps (sequence creation and release, statistics).
  template <typename Fn>
  auto WithStage(Fn fn) {
    absl::MutexLock lock(&stage_mu_);
    return fn(*stage_);
  }

  // Time the compute thread spent running batches (seconds, since start).
  double busy_seconds() const;
  // The most batches begun and not yet ended at once (> 1: batches interleaved).
  int64_t max_open() const;

 private:
  struct Job {
    int64_t order = 0;  // submission order: the oldest runnable job runs first
    std::vector<StageItem> items;
    StageInput input;
    Done done;
    std::unique_ptr<StagePass> pass;  // null until begun
  };

  void ComputeLoop();
  void WaiterLoop();
  // One step of a job on the compute thread (under stage_mu_): the job's result when it is
  // over, nullopt when it waits for experts.
  std::optional<absl::StatusOr<StageOutput>> Step(Job& job);
  void PushRunnable(std::unique_ptr<Job> job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Stage* const stage_;
  ExpertDispatcher* const experts_;

  absl::Mutex stage_mu_;  // held by whoever calls into stage_

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Job>> runnable_ ABSL_GUARDED_BY(mu_);
  std::deque<std::unique_ptr<Job>> waiting_ ABSL_GUARDED_BY(mu_);  // expert work to compute
  int busy_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_order_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t jobs_ ABSL_GUARDED_BY(mu_) = 0;  // submitted and not yet done
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  double busy_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0, max_open_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> waiters_ ABSL_GUARDED_BY(mu_);
  std::thread compute_;
};

}  // namespace jamba

#endif  // JAMBA_LAYER_WORKER_STAGE_RUNNER_H_
