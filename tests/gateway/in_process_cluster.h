// A whole cluster in the test's process: expert workers, layer workers and a gateway, each a
// real gRPC server on 127.0.0.1 (port 0), talking to each other over loopback exactly as the
// separate binaries do. Tests drive it through the public v1::Jamba API, through the
// gateway's own objects (pipeline, executor, scheduler), or through each layer worker's
// ShardInfo (pool counters), and can stop an expert worker to exercise failover.
#ifndef JAMBA_TESTS_GATEWAY_IN_PROCESS_CLUSTER_H_
#define JAMBA_TESTS_GATEWAY_IN_PROCESS_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/config/model_config.h"
#include "expert-worker/expert_service.h"
#include "gateway/gateway.h"
#include "grpcpp/server.h"
#include "jamba/v1/generate.grpc.pb.h"
#include "jamba/v1/layer_worker.grpc.pb.h"
#include "layer-worker/layer_service.h"

namespace jamba {

// One expert worker: an ExpertService over the experts of `spec` (expert-worker/expert_set.h
// syntax, e.g. "1:0,1;3:0") - what jamba-expert-worker --experts SPEC runs.
struct ExpertServer {
  std::string address;  // 127.0.0.1:PORT
  std::unique_ptr<ExpertService> service;
  std::unique_ptr<grpc::Server> server;  // null once stopped
};
absl::StatusOr<std::unique_ptr<ExpertServer>> StartExpertServer(const std::string& model_dir,
                                                                const std::string& spec);

// One layer worker: a LayerService (which connects to config.expert_workers) - what
// jamba-layer-worker runs.
struct LayerServer {
  std::string address;
  std::unique_ptr<LayerService> service;
  std::unique_ptr<grpc::Server> server;
};
absl::StatusOr<std::unique_ptr<LayerServer>> StartLayerServer(const LayerWorkerConfig& config);

// The default expert placement over `workers` expert workers: expert e of every MoE layer on
// worker e % workers, and expert 0 of every MoE layer also on worker 1 (a replica). Workers
// that would hold nothing are left out. Empty for a model without MoE layers.
std::vector<std::string> DefaultExpertSpecs(const ModelConfig& config, int workers = 4);

// Layer ranges [begin, end) splitting `num_layers` evenly over `workers` stages.
std::vector<std::pair<int64_t, int64_t>> EvenLayerSplit(int64_t num_layers, int workers);

struct ClusterOptions {
  std::string model_dir;
  int layer_workers = 2;  // stages per pipeline
  int pipelines = 1;      // full sets of stages, sharing the expert workers
  // One ExpertSet spec per expert worker; empty: the layer workers hold their experts.
  std::vector<std::string> expert_specs;
  StageOptions stage;  // every layer worker's pools and context limit
  RemoteExpertsOptions remote;
  int32_t micro_batches = 2;   // every layer worker's
  SchedulerOptions scheduler;  // the gateway's (pipeline_depth among them)
};

class InProcessCluster {
 public:
  // Starts the expert workers, then the layer workers (layers split evenly, in order), then
  // the gateway over them.
  static absl::StatusOr<std::unique_ptr<InProcessCluster>> Start(const ClusterOptions& options);
  // Stops the gateway (cancelling its streams), then the layer and expert workers.
  ~InProcessCluster();

  const std::string& gateway_address() const { return gateway_address_; }
  std::vector<std::string> layer_addresses() const;
  std::vector<std::string> expert_addresses() const;
  const ModelConfig& config() const { return config_; }

  Gateway* gateway() { return gateway_.get(); }
  // The layer workers, in stage order (their services' statistics).
  std::vector<LayerServer*> layer_servers() const {
    std::vector<LayerServer*> out;
    for (const auto& l : layers_) out.push_back(l.get());
    return out;
  }
  // A stub on a fresh channel to the gateway (thread-safe; share or make one per thread).
  std::unique_ptr<v1::Jamba::Stub> NewStub() const;
  v1::Jamba::Stub* stub() { return stub_.get(); }

  // ShardInfo of every layer worker, asked directly (not through the gateway), in stage order.
  absl::StatusOr<std::vector<v1::ShardInfoResponse>> LayerShardInfos() const;
  // Polls LayerShardInfos until every layer worker has no live sequence, KV block or Mamba
  // slot in use. DeadlineExceeded (with the last counters) if that does not happen in time.
  absl::Status WaitForEmptyPools(absl::Duration timeout) const;

  // Shuts expert worker `index` down (its port closes; calls to it fail with UNAVAILABLE).
  void StopExpertWorker(size_t index);
  // The same for layer worker `index` (its state stays in memory, unreachable).
  void StopLayerWorker(size_t index);

 private:
  InProcessCluster() = default;

  ModelConfig config_;
  // Destroyed in reverse: gateway server and gateway first (see the destructor).
  std::vector<std::unique_ptr<ExpertServer>> experts_;
  std::vector<std::unique_ptr<LayerServer>> layers_;
  std::vector<std::unique_ptr<v1::LayerWorker::Stub>> layer_stubs_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<grpc::Server> gateway_server_;
  std::string gateway_address_;
  std::unique_ptr<v1::Jamba::Stub> stub_;
};

// Whether every pool counter of `info` is zero; `why` gets the counters otherwise.
bool PoolsEmpty(const v1::ShardInfoResponse& info, std::string* why);

}  // namespace jamba

#endif  // JAMBA_TESTS_GATEWAY_IN_PROCESS_CLUSTER_H_
