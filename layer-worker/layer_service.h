// The LayerWorker gRPC service: one pipeline stage (a Stage over a layer-range shard) whose
// MoE layers reach the experts they do not hold through RemoteExperts. The gateway creates
// and releases sequences and sends ragged batches, several in flight; the stage keeps the
// KV blocks and Mamba slots of every live sequence for its layers. Batches run on a
// StageRunner, split into `micro_batches` so that one part's mixers compute while another's
// experts are computed by the expert workers; a stage without the head sends its activations
// on to the next stage of the request's route and relays that stage's answer.
#ifndef JAMBA_LAYER_WORKER_LAYER_SERVICE_H_
#define JAMBA_LAYER_WORKER_LAYER_SERVICE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/runtime/stage.h"
#include "jamba/v1/layer_worker.grpc.pb.h"
#include "layer-worker/remote_experts.h"
#include "layer-worker/stage_runner.h"

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
  // Parts each batch of at least two sequences is split into (contiguous, near-equal token
  // counts), when MoE tokens go to expert workers; 1: none. Each part is validated when it
  // begins, so a batch whose later part is invalid fails after its earlier parts advanced:
  // the gateway fails and releases every sequence of a failed batch either way.
  int32_t micro_batches = 1;
  // Deadline of a call to the next stage when the request carries none.
  absl::Duration next_stage_timeout = absl::Seconds(120);
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
  // `context` (may be null) carries the caller's deadline and cancellation to the next stage.
  absl::Status DoForward(const v1::ForwardRequest& request, v1::ForwardResponse* response,
                         grpc::ServerContext* context = nullptr);
  void DoShardInfo(v1::ShardInfoResponse* response);

  // For metrics.
  struct Stats {
    StageStats stage;
    int64_t forward_calls = 0;
    double forward_seconds = 0;    // wall time of forward calls (this stage's part, overlapping)
    double busy_seconds = 0;       // time the stage's compute thread was busy
    int64_t max_open_batches = 0;  // batches (or micro-batches) interleaved at once, at most
    int64_t forward_tokens = 0;
    int64_t expert_wait_micros = 0;
    std::vector<ExpertWorkerStats> expert_workers;
  };
  Stats GetStats();
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  LayerService() = default;

  // Runs the batch here, in micro-batches.
  absl::StatusOr<StageOutput> Compute(std::vector<StageItem> items, const StageInput& input);
  // Sends this stage's activations on along the route and puts the answer in `response`.
  absl::Status ForwardToNext(const v1::ForwardRequest& request, std::vector<float> hidden,
                             v1::ForwardResponse* response, grpc::ServerContext* context);
  v1::LayerWorker::Stub* NextStage(const std::string& address);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<RemoteExperts> remote_;  // null when every expert is local
  std::unique_ptr<Stage> stage_;           // driven by runner_ only
  std::unique_ptr<StageRunner> runner_;
  std::string fingerprint_;
  int32_t micro_batches_ = 1;
  absl::Duration next_stage_timeout_;
  absl::Mutex mu_;
  int64_t forward_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t forward_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double forward_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex stubs_mu_;
  std::map<std::string, std::unique_ptr<v1::LayerWorker::Stub>> next_stages_
      ABSL_GUARDED_BY(stubs_mu_);
};

}  // namespace jamba

#endif  // JAMBA_LAYER_WORKER_LAYER_SERVICE_H_
