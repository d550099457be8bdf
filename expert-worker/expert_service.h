// The ExpertWorker gRPC service: computes batches of routed tokens through the experts this
// process holds. It keeps no per-sequence state, so any replica can answer any request and a
// restarted worker loses nothing.
//
// With `merge_requests`, requests that arrive while one computes are merged: the next round
// takes every request waiting, and each (layer, expert) of the round is one product over the
// rows of all of them, so an expert's weights are read once for several layer workers'
// (pipelines', batches') tokens. Every kernel is batch-invariant, so a row's result does not
// depend on what it was merged with. Off by default: on the 2-core CPU benchmark the merged
// round's wait for the first request cost more than the shared weight reads saved (1.26x
// against 1.33x the single process, two pipelines, batch 32); it is meant for devices whose
// expert products are bound by weight reads.
#ifndef JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
#define JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "jamba/v1/expert_worker.grpc.pb.h"
#include "proto/wire/tensor_codec.h"

namespace jamba {

class ExpertService final : public v1::ExpertWorker::Service {
 public:
  // `model` must be an experts-only shard (ShardSpec::experts_only) on `backend`.
  ExpertService(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model,
                bool merge_requests = false);

  grpc::Status Compute(grpc::ServerContext* context, const v1::ExpertRequest* request,
                       v1::ExpertResponse* response) override;
  grpc::Status ShardInfo(grpc::ServerContext* context, const v1::ExpertShardInfoRequest* request,
                         v1::ExpertShardInfoResponse* response) override;

  // The service logic with errors as values; Compute converts at the gRPC boundary.
  absl::Status ComputeBatches(const v1::ExpertRequest& request, v1::ExpertResponse* response);

  // Work done so far, for metrics.
  struct Stats {
    std::map<std::pair<int32_t, int32_t>, int64_t> tokens;  // routed tokens per (layer, expert)
    int64_t requests = 0;
    int64_t merged_requests = 0;  // requests computed in a round with others
    int64_t rounds = 0;
    int64_t batches = 0;
    double compute_seconds = 0;
  };
  Stats GetStats() const;
  // Compute requests received and not yet answered (computing, or waiting for the one that
  // computes): the worker's queue depth.
  int64_t queue_depth() const { return queue_depth_.load(std::memory_order_relaxed); }
  // Requests queued for the next round.
  int64_t waiting() {
    absl::MutexLock lock(&queue_mu_);
    return static_cast<int64_t>(queue_.size());
  }
  // Tests: called with the round's size at the start of every round, on the thread computing it.
  void SetRoundHookForTesting(std::function<void(size_t)> hook) { round_hook_ = std::move(hook); }
  const Model& model() const { return *model_; }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  // One request waiting for (or in) a round.
  struct Pending {
    const v1::ExpertRequest* request;
    const std::vector<WireF32View>* inputs;  // the request's batches, validated
    v1::ExpertResponse* response;
    absl::Status status;
    bool done = false;
  };
  // Computes one round (under mu_): every pending request's batches, merged by expert.
  absl::Status ComputeRound(const std::vector<Pending*>& round);

  const bool merge_requests_;
  std::function<void(size_t)> round_hook_;
  std::atomic<int64_t> queue_depth_{0};
  absl::Mutex queue_mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(queue_mu_);  // waiting for the next round
  bool computing_ ABSL_GUARDED_BY(queue_mu_) = false;      // a round is being computed
  mutable std::mutex mu_;  // one backend stream: one round computes at a time
  Workspace workspace_;
  Stats stats_;  // guarded by mu_
};

}  // namespace jamba

#endif  // JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
