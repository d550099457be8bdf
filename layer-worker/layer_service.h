// The LayerWorker gRPC service: one pipeline stage (a Stage over a layer-range shard) whose
// MoE layers reach the experts they do not hold through RemoteExperts. The gateway creates
// and releases sequences and sends one ragged batch per scheduler step; the stage keeps the
// KV blocks and Mamba slots of every live sequence for its layers.
#ifndef JAMBA_LAYER_WORKER_LAYER_SERVICE_H_
#define JAMBA_LAYER_WORKER_LAYER_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/runtime/stage.h"
#include "jamba/v1/layer_worker.grpc.pb.h"
#include "layer-worker/remote_experts.h"

namespace jamba {

struct LayerWorkerConfig {
  std::string model_dir;
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // exclusive; -1: through the last layer
  DType weight_dtype = DType::kF32;
  bool int8_experts = false;  // experts held here (no expert workers) quantised to int8
  // Expert workers to send MoE tokens to. Empty: this process loads every expert of its
  // layers itself. Otherwise it loads only the routers, and every expert of its MoE layers
  // must be held by some listed worker.
  std::vector<std::string> expert_workers;
  RemoteExpertsOptions remote;
  StageOptions stage;  // pool sizes and context limit (`experts` is set by Create)
};

class LayerService final : public v1::LayerWorker::Service {
 public:
  // Loads the shard, connects to the expert workers (waiting for them to come up) and checks
  // that every expert of the held MoE layers is reachable.
  static absl::StatusOr<std::unique_ptr<LayerService>> Create(const LayerWorkerConfig& config,
                                                              std::unique_ptr<Backend> backend);

  grpc::Status CreateSequences(grpc::ServerContext* context,
                               const v1::CreateSequencesRequest* request,
                               v1::CreateSequencesResponse* response) override;
  grpc::Status ReleaseSequences(grpc::ServerContext* context,
                                const v1::ReleaseSequencesRequest* request,
                                v1::ReleaseSequencesResponse* response) override;
  grpc::Status Forward(grpc::ServerContext* context, const v1::ForwardRequest* request,
                       v1::ForwardResponse* response) override;
  grpc::Status ShardInfo(grpc::ServerContext* context, const v1::ShardInfoRequest* request,
                         v1::ShardInfoResponse* response) override;

  // The service logic with errors as values; the overrides convert at the gRPC boundary.
  absl::Status DoCreate(const v1::CreateSequencesRequest& request);
  void DoRelease(const v1::ReleaseSequencesRequest& request);
  absl::Status DoForward(const v1::ForwardRequest& request, v1::ForwardResponse* response);
  void DoShardInfo(v1::ShardInfoResponse* response);

  // For metrics.
  struct Stats {
    StageStats stage;
    int64_t forward_calls = 0;
    double forward_seconds = 0;
    int64_t forward_tokens = 0;
    int64_t expert_wait_micros = 0;
    std::vector<ExpertWorkerStats> expert_workers;
  };
  Stats GetStats();
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  LayerService() = default;

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<RemoteExperts> remote_;  // null when every expert is local
  absl::Mutex mu_;                         // one backend stream: the stage runs one call at a time
  std::unique_ptr<Stage> stage_ ABSL_GUARDED_BY(mu_);
  std::string fingerprint_;
  int64_t forward_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t forward_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double forward_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace jamba

#endif  // JAMBA_LAYER_WORKER_LAYER_SERVICE_H_
