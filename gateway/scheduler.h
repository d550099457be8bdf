// The gateway's continuous-batching scheduler. One thread keeps up to `pipeline_depth` batches
// in flight on the executor (so that with a pipeline of layer workers every stage computes at
// once), each running sequence in at most one of them. Whenever a batch returns, a request
// arrives, a reader drains or a call is cancelled, it:
//   1. samples each returned sequence's next token with its own Completion (the code jamba-run
//      uses, so tokens match the single process), streams the tokens, and releases finished
//      sequences' state on every stage;
//   2. drops cancelled sequences that are not in flight, admits waiting requests (FIFO) while
//      a running slot and their KV reservation are free, and creates their state;
//   3. launches batches while fewer than `pipeline_depth` are in flight: a token for each
//      decoding sequence not in flight whose reader keeps up (at most 1/depth of the decoding
//      sequences per batch, longest-waiting first, so the batches in flight stay balanced),
//      then prompt chunks of prefilling sequences (at most `prefill_chunk` each) until the
//      batch's token budget is spent - so a long prompt is spread over batches and never
//      stalls running decodes.
// KV blocks are reserved at admission for the sequence's whole life (prompt + max_new_tokens,
// capped by the context), as TGI does: a running sequence never runs out of cache and is never
// preempted; a request that does not fit waits in the queue, and a full queue rejects at once.
#ifndef JAMBA_GATEWAY_SCHEDULER_H_
#define JAMBA_GATEWAY_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/completion.h"
#include "gateway/executor.h"
#include "gateway/request_stream.h"
#include "gateway/scheduler_observer.h"

namespace jamba {

struct SchedulerOptions {
  int32_t max_running = 16;           // sequences in the batch at once (<= workers' slots)
  int32_t max_tokens_per_step = 512;  // rows of one forward (decodes + prompt chunks)
  int32_t max_queue = 256;            // waiting requests; beyond: RESOURCE_EXHAUSTED
  int32_t prefill_chunk = 256;        // prompt tokens of one sequence per step
  int32_t max_pending_tokens = 64;    // tokens a reader may lag before its sequence pauses
  int32_t pipeline_depth = 0;         // batches in flight at once; 0: the executor's default
};

absl::Status ValidateSchedulerOptions(const SchedulerOptions& options);

// One pipeline's share of the scheduler's work.
struct PipelineStats {
  int64_t running = 0;    // sequences assigned to it
  int64_t in_flight = 0;  // its batches in flight now
  int64_t kv_blocks_reserved = 0;
};

struct SchedulerStats {
  int64_t queued = 0;
  int64_t running = 0;
  int64_t kv_blocks_reserved = 0;
  int64_t steps = 0;           // batches forwarded
  int64_t step_tokens = 0;     // rows forwarded, all batches
  int64_t in_flight = 0;       // batches in flight now, all pipelines
  int64_t max_in_flight = 0;   // the most at once so far (over all pipelines)
  int32_t pipeline_depth = 0;  // per pipeline
  std::vector<PipelineStats> pipelines;
  int64_t generated_tokens = 0;
  int64_t finished = 0;  // requests ended (any reason, incl. errors and cancels)
  int64_t rejected_queue_full = 0;
  // Admissions a layer worker refused for lack of room (another gateway's sequences hold it);
  // the requests waited and were retried.
  int64_t create_refusals = 0;
};

class Scheduler {
 public:
  // Starts the scheduler thread over one or more pipelines (data parallel: each running
  // sequence lives on one of them, assigned at admission to the one with the most free KV
  // blocks, then the fewest running; each keeps `pipeline_depth` batches in flight; `max_running`
  // holds per pipeline). Every executor (and `observer`, which may be null) must outlive the
  // scheduler; their KV block sizes must agree.
  Scheduler(std::vector<SequenceExecutor*> executors, const SchedulerOptions& options,
            SchedulerObserver* observer = nullptr);
  Scheduler(SequenceExecutor* executor, const SchedulerOptions& options,
            SchedulerObserver* observer = nullptr)
      : Scheduler(std::vector<SequenceExecutor*>{executor}, options, observer) {}
  // Stops the thread; requests still queued or running end with Unavailable, and running
  // sequences are released on the executor.
  ~Scheduler();

  // Queues a validated request. ResourceExhausted when the queue is full, or when the request
  // could never fit (its KV reservation exceeds the whole cache).
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(std::unique_ptr<Completion> completion);

  SchedulerStats Stats() const;

 private:
  struct Sequence {
    SequenceId id = 0;
    std::unique_ptr<Completion> completion;
    std::shared_ptr<RequestStream> stream;
    int64_t fed = 0;          // tokens the executor has absorbed
    int64_t kv_blocks = 0;    // reserved for the sequence's life
    absl::Time submitted;     // for latency metrics
    absl::Time last_token;    // InfinitePast until the first token
    size_t pipeline = 0;      // the pipeline holding its state
    bool in_flight = false;   // in a batch that has not come back
    int64_t last_batch = -1;  // the last batch it was in (the longest-waiting go first)
  };

  // A batch on the executor (scheduler thread only).
  struct Batch {
    size_t pipeline = 0;
    std::vector<Sequence*> sequences;  // in running_, in item order
    std::vector<StageItem> items;
    int64_t tokens = 0;
    absl::Time start;
  };

  void Run();
  void Wake();
  int64_t KvBlocksFor(const Completion& c) const;
  // KV positions reserved on the workers for the sequence's life (0 without attention).
  int64_t ReserveTokens(const Completion& c) const;
  // Ends the sequences (their streams are finished by the caller) and frees their state.
  void Retire(std::vector<std::unique_ptr<Sequence>>* done);
  // Moves admissible queued requests into `admitted` (scheduler thread, under mu_).
  void Admit(std::vector<std::unique_ptr<Sequence>>* admitted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops cancelled sequences that are not in flight, admits and creates new ones.
  void AdmitAndCancel();
  // Launches batches while fewer than the depth are in flight on a pipeline.
  void Launch();
  // Builds pipeline p's next batch from its sequences not in flight; false if there is none.
  bool NextBatch(size_t p, Batch* batch, std::vector<int32_t>* tokens);
  // Where the queue's head can go now (the most free KV blocks, then the fewest running), or
  // -1 if nowhere.
  int PlaceHead(int64_t kv_blocks) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes a returned batch's results: samples, streams, retires finished sequences.
  void Complete(Batch& batch, absl::StatusOr<StepOutput> out);
  // Removes (and returns) the finished sequences from running_ into `done`.
  void Collect(const std::vector<Sequence*>& finished,
               std::vector<std::unique_ptr<Sequence>>* done);

  // Ends one sequence's stream and reports it.
  void Finish(Sequence& s, const absl::Status& status);

  // Per pipeline (its executor is executors_[p]). Counters change under mu_ (Submit and Stats
  // read them); the rest is fixed.
  struct Lane {
    ExecutorLimits limits;
    int32_t max_running = 0;
    int64_t kv_blocks_reserved = 0;
    int64_t running = 0;
    int64_t in_flight = 0;
    // A stage refused an admission (another gateway holds its room): no new sequence goes
    // here before this time, or before one of ours on it finishes.
    absl::Time refused_until = absl::InfinitePast();
  };

  SchedulerObserver* const observer_;
  const SchedulerOptions options_;
  int32_t depth_ = 1;
  int64_t kv_block_size_ = 0;       // shared by every pipeline
  int64_t max_context_ = 0;         // the least of the pipelines'
  int64_t largest_kv_blocks_ = -1;  // the largest pipeline's cache; -1: no KV at all

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Sequence>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Lane> lanes_ ABSL_GUARDED_BY(mu_);
  SequenceId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Batches that came back from the executor, for the scheduler thread to take.
  std::deque<std::pair<int64_t, absl::StatusOr<StepOutput>>> returned_ ABSL_GUARDED_BY(mu_);
  // When a refused admission is retried if nothing wakes the scheduler before.
  static constexpr absl::Duration kCreateRetry = absl::Milliseconds(50);
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t create_refusals_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_count_ ABSL_GUARDED_BY(mu_) = 0;  // all pipelines
  int64_t max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<SequenceExecutor*> executors_;  // per pipeline, fixed: read without mu_

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::map<int64_t, Batch> in_flight_;  // by batch id
  int64_t next_batch_ = 0;

  std::atomic<int64_t> steps_{0}, step_tokens_{0}, generated_{0}, finished_{0}, rejected_full_{0};
  std::thread thread_;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_SCHEDULER_H_
