#include "tests/gateway/in_process_cluster.h"

#include <chrono>
#include <map>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/model/model.h"
#include "expert-worker/expert_set.h"
#include "grpcpp/client_context.h"
#include "kernels/backend.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "rpc/server.h"

namespace jamba {
namespace {

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

// Lets in-flight calls end promptly: a Generate handler notices the cancellation within its
// poll interval.
void ShutdownNow(grpc::Server* server) {
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertServer>> StartExpertServer(const std::string& model_dir,
                                                                const std::string& spec) {
  JAMBA_ASSIGN_OR_RETURN(ExpertSet set, ParseExpertSet(spec));
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  LoadOptions options;  // as expert-worker/main.cc loads it
  options.shard.experts_only = true;
  options.shard.want_expert = [set](int64_t layer, int64_t e) { return set.Contains(layer, e); };
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(model_dir, options, backend.get()));
  auto s = std::make_unique<ExpertServer>();
  s->service = std::make_unique<ExpertService>(std::move(backend), std::move(model));
  JAMBA_ASSIGN_OR_RETURN(RunningServer running, StartServer("127.0.0.1:0", {s->service.get()}));
  s->server = std::move(running.server);
  s->address = Loopback(running.port);
  return s;
}

absl::StatusOr<std::unique_ptr<LayerServer>> StartLayerServer(const LayerWorkerConfig& config) {
  auto s = std::make_unique<LayerServer>();
  JAMBA_ASSIGN_OR_RETURN(s->service, LayerService::Create(config, CreateCpuBackend()));
  JAMBA_ASSIGN_OR_RETURN(RunningServer running, StartServer("127.0.0.1:0", {s->service.get()}));
  s->server = std::move(running.server);
  s->address = Loopback(running.port);
  return s;
}

std::vector<std::string> DefaultExpertSpecs(const ModelConfig& config, int workers) {
  std::vector<std::map<int64_t, std::set<int64_t>>> held(workers);  // layer -> experts
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    if (config.layers[layer].ffn != FfnKind::kMoe) continue;
    for (int64_t e = 0; e < config.num_experts; ++e) held[e % workers][layer].insert(e);
    if (workers > 1) held[1][layer].insert(0);
  }
  std::vector<std::string> specs;
  for (const auto& w : held) {
    if (w.empty()) continue;
    std::vector<std::string> layers;
    for (const auto& [layer, experts] : w) {
      layers.push_back(absl::StrCat(layer, ":", absl::StrJoin(experts, ",")));
    }
    specs.push_back(absl::StrJoin(layers, ";"));
  }
  return specs;
}

std::vector<std::pair<int64_t, int64_t>> EvenLayerSplit(int64_t num_layers, int workers) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int i = 0; i < workers; ++i) {
    out.emplace_back(num_layers * i / workers, num_layers * (i + 1) / workers);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<InProcessCluster>> InProcessCluster::Start(
    const ClusterOptions& options) {
  std::unique_ptr<InProcessCluster> c(new InProcessCluster());
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint,
                         Checkpoint::Open(options.model_dir));
  c->config_ = checkpoint->config();
  if (options.layer_workers < 1 || options.layer_workers > c->config_.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_workers must be in [1, ", c->config_.num_layers, "]"));
  }
  std::vector<std::string> expert_addresses;
  for (const std::string& spec : options.expert_specs) {
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<ExpertServer> e,
                           StartExpertServer(options.model_dir, spec));
    expert_addresses.push_back(e->address);
    c->experts_.push_back(std::move(e));
  }
  GatewayConfig gateway;
  gateway.model_dir = options.model_dir;
  gateway.scheduler = options.scheduler;
  for (int p = 0; p < options.pipelines; ++p) {
    std::vector<std::string> stages;
    for (const auto& [begin, end] : EvenLayerSplit(c->config_.num_layers, options.layer_workers)) {
      LayerWorkerConfig lw;
      lw.model_dir = options.model_dir;
      lw.layer_begin = begin;
      lw.layer_end = end;
      lw.expert_workers = expert_addresses;
      lw.remote = options.remote;
      lw.stage = options.stage;
      lw.micro_batches = options.micro_batches;
      JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<LayerServer> l, StartLayerServer(lw));
      stages.push_back(l->address);
      c->layer_stubs_.push_back(v1::LayerWorker::NewStub(MakeInternalChannel(l->address)));
      c->layers_.push_back(std::move(l));
    }
    gateway.pipelines.push_back(std::move(stages));
  }
  JAMBA_ASSIGN_OR_RETURN(c->gateway_, Gateway::Create(gateway));
  JAMBA_ASSIGN_OR_RETURN(RunningServer running,
                         StartServer("127.0.0.1:0", {c->gateway_->service()}));
  c->gateway_server_ = std::move(running.server);
  c->gateway_address_ = Loopback(running.port);
  c->stub_ = c->NewStub();
  return c;
}

InProcessCluster::~InProcessCluster() {
  // The public server first, so no handler outlives the scheduler it waits on; then the
  // gateway, whose scheduler releases what is still running on the layer workers.
  if (gateway_server_ != nullptr) ShutdownNow(gateway_server_.get());
  gateway_server_.reset();
  gateway_.reset();
  for (auto& l : layers_) {
    if (l->server != nullptr) ShutdownNow(l->server.get());
  }
  layers_.clear();
  for (auto& e : experts_) {
    if (e->server != nullptr) ShutdownNow(e->server.get());
  }
  experts_.clear();
}

std::vector<std::string> InProcessCluster::layer_addresses() const {
  std::vector<std::string> out;
  for (const auto& l : layers_) out.push_back(l->address);
  return out;
}

std::vector<std::string> InProcessCluster::expert_addresses() const {
  std::vector<std::string> out;
  for (const auto& e : experts_) out.push_back(e->address);
  return out;
}

std::unique_ptr<v1::Jamba::Stub> InProcessCluster::NewStub() const {
  return v1::Jamba::NewStub(MakeInternalChannel(gateway_address_));
}

absl::StatusOr<std::vector<v1::ShardInfoResponse>> InProcessCluster::LayerShardInfos() const {
  std::vector<v1::ShardInfoResponse> out(layer_stubs_.size());
  for (size_t i = 0; i < layer_stubs_.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    JAMBA_RETURN_IF_ERROR(
        FromGrpcStatus(layer_stubs_[i]->ShardInfo(&ctx, v1::ShardInfoRequest(), &out[i])));
  }
  return out;
}

bool PoolsEmpty(const v1::ShardInfoResponse& info, std::string* why) {
  if (info.live_sequences() == 0 && info.kv_blocks_used() == 0 && info.mamba_slots_used() == 0) {
    return true;
  }
  *why = absl::StrCat("layers [", info.layer_begin(), ", ", info.layer_end(), "): live_sequences ",
                      info.live_sequences(), ", kv_blocks_used ", info.kv_blocks_used(),
                      ", mamba_slots_used ", info.mamba_slots_used());
  return false;
}

absl::Status InProcessCluster::WaitForEmptyPools(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string why;
  while (true) {
    JAMBA_ASSIGN_OR_RETURN(std::vector<v1::ShardInfoResponse> infos, LayerShardInfos());
    bool empty = true;
    why.clear();
    for (const v1::ShardInfoResponse& info : infos) {
      std::string w;
      if (!PoolsEmpty(info, &w)) {
        empty = false;
        absl::StrAppend(&why, w, "; ");
      }
    }
    if (empty) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pools still in use after ", absl::FormatDuration(timeout), ": ", why));
    }
    absl::SleepFor(absl::Milliseconds(5));  // polling interval of a bounded wait
  }
}

void InProcessCluster::StopExpertWorker(size_t index) {
  ExpertServer& e = *experts_.at(index);
  if (e.server == nullptr) return;
  ShutdownNow(e.server.get());
  e.server->Wait();
  e.server.reset();  // closes the listening port
}

void InProcessCluster::StopLayerWorker(size_t index) {
  LayerServer& l = *layers_.at(index);
  if (l.server == nullptr) return;
  ShutdownNow(l.server.get());
  l.server->Wait();
  l.server.reset();
}

}  // namespace jamba
