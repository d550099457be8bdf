// The ExpertWorker gRPC service: computes batches of routed tokens through the experts this
// process holds. It keeps no per-sequence state, so any replica can answer any request and a
// restarted worker loses nothing.
#ifndef JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
#define JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_

#include <atomic>
#include <map>
#include <memory>
#include <utility>
#include <mutex>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "jamba/v1/expert_worker.grpc.pb.h"

namespace jamba {

class ExpertService final : public v1::ExpertWorker::Service {
 public:
  // `model` must be an experts-only shard (ShardSpec::experts_only) on `backend`.
  ExpertService(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model);

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
    int64_t batches = 0;
    double compute_seconds = 0;
  };
  Stats GetStats() const;
  // Compute requests received and not yet answered (computing, or waiting for the one that
  // computes): the worker's queue depth.
  int64_t queue_depth() const { return queue_depth_.load(std::memory_order_relaxed); }
  const Model& model() const { return *model_; }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::atomic<int64_t> queue_depth_{0};
  mutable std::mutex mu_;  // one backend stream: requests compute one at a time
  Workspace workspace_;
  Stats stats_;  // guarded by mu_
};

}  // namespace jamba

#endif  // JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
