// The ExpertWorker gRPC service: computes batches of routed tokens through the experts this
// process holds. It keeps no per-sequence state, so any replica can answer any request and a
// restarted worker loses nothing.
#ifndef JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
#define JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_

#include <memory>
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

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::mutex mu_;  // one backend stream: requests compute one at a time
  Workspace workspace_;
};

}  // namespace jamba

#endif  // JAMBA_EXPERT_WORKER_EXPERT_SERVICE_H_
