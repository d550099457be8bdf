#include "expert-worker/expert_service.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu_threads.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/grpc_status.h"

namespace jamba {

ExpertService::ExpertService(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model)
    : backend_(std::move(backend)), model_(std::move(model)), workspace_(backend_.get()) {}

absl::Status ExpertService::ComputeBatches(const v1::ExpertRequest& request,
                                           v1::ExpertResponse* response) {
  const ModelConfig& c = model_->config();
  // Validate every batch before computing any.
  std::vector<WireF32View> inputs;
  for (int i = 0; i < request.batches_size(); ++i) {
    const v1::ExpertBatch& b = request.batches(i);
    if (!model_->HoldsExpert(b.layer(), b.expert())) {
      return absl::InvalidArgumentError(absl::StrCat("batches[", i, "]: expert ", b.expert(),
                                                     " of layer ", b.layer(),
                                                     " is not held by this worker"));
    }
    JAMBA_ASSIGN_OR_RETURN(WireF32View view,
                           ViewF32(b.tokens(), 2, absl::StrCat("batches[", i, "].tokens")));
    if (view.shape[1] != c.hidden_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batches[", i, "].tokens: expected ", c.hidden_size, " columns, got ", view.shape[1]));
    }
    inputs.push_back(std::move(view));
  }
  std::lock_guard<std::mutex> lock(mu_);
  AdoptCpuThreads();  // gRPC's handler threads start from OpenMP's default
  const auto start = std::chrono::steady_clock::now();
  ++stats_.requests;
  for (int i = 0; i < request.batches_size(); ++i) {
    const v1::ExpertBatch& b = request.batches(i);
    stats_.tokens[{b.layer(), b.expert()}] += inputs[i].shape[0];
    ++stats_.batches;
  }
  BatchLayout layout;  // experts are per token: no sequence state involved
  ForwardContext ctx{backend_.get(), &layout, &workspace_, &c};
  std::vector<float> host;
  for (int i = 0; i < request.batches_size(); ++i) {
    const v1::ExpertBatch& b = request.batches(i);
    const int64_t n = inputs[i].shape[0];
    v1::Tensor* out = response->add_outputs();
    if (n == 0) {
      const int64_t shape[] = {0, c.hidden_size};
      EncodeF32(nullptr, shape, out);
      continue;
    }
    workspace_.Reset();
    Tensor x = workspace_.Take(DType::kF32, {n, c.hidden_size});
    JAMBA_RETURN_IF_ERROR(backend_->Upload(inputs[i].data, n * c.hidden_size * sizeof(float), x));
    Tensor y = workspace_.Take(DType::kF32, {n, c.hidden_size});
    model_->ExpertForward(ctx, b.layer(), b.expert(), x, y);
    host.resize(static_cast<size_t>(n * c.hidden_size));
    JAMBA_RETURN_IF_ERROR(backend_->Download(y, host.data()));
    const int64_t shape[] = {n, c.hidden_size};
    EncodeF32(host.data(), shape, out);
  }
  stats_.compute_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

ExpertService::Stats ExpertService::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

grpc::Status ExpertService::Compute(grpc::ServerContext*, const v1::ExpertRequest* request,
                                    v1::ExpertResponse* response) {
  queue_depth_.fetch_add(1, std::memory_order_relaxed);
  const absl::Status s = ComputeBatches(*request, response);
  queue_depth_.fetch_sub(1, std::memory_order_relaxed);
  return ToGrpcStatus(s);
}

grpc::Status ExpertService::ShardInfo(grpc::ServerContext*, const v1::ExpertShardInfoRequest*,
                                      v1::ExpertShardInfoResponse* response) {
  response->set_fingerprint(model_->fingerprint());
  const ModelConfig& c = model_->config();
  for (int64_t layer = model_->layer_begin(); layer < model_->layer_end(); ++layer) {
    v1::ExpertKeyList list;
    list.set_layer(static_cast<int32_t>(layer));
    for (int64_t e = 0; e < c.num_experts; ++e) {
      if (model_->HoldsExpert(layer, e)) list.add_experts(static_cast<int32_t>(e));
    }
    if (list.experts_size() > 0) *response->add_layers() = std::move(list);
  }
  return grpc::Status::OK;
}

}  // namespace jamba
