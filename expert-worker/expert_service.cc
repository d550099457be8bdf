#include "expert-worker/expert_service.h"

#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu_threads.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/grpc_status.h"

namespace jamba {

ExpertService::ExpertService(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model,
                             bool merge_requests)
    : backend_(std::move(backend)),
      model_(std::move(model)),
      merge_requests_(merge_requests),
      workspace_(backend_.get()) {}

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
  Pending me{&request, &inputs, response};
  queue_mu_.Lock();
  queue_.push_back(&me);
  while (true) {
    // Done by someone else's round, or first in line while no round computes: lead the next.
    auto ready = [this, &me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
      return me.done || (!computing_ && !queue_.empty() && queue_.front() == &me);
    };
    queue_mu_.Await(absl::Condition(&ready));
    if (me.done) break;
    // Merging: everyone waiting; otherwise requests compute one at a time, in arrival order.
    const size_t take = merge_requests_ ? queue_.size() : 1;
    std::vector<Pending*> round(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
    computing_ = true;
    queue_mu_.Unlock();
    const absl::Status computed = ComputeRound(round);
    queue_mu_.Lock();
    for (Pending* p : round) {
      if (!computed.ok()) p->status = computed;
      p->done = true;
    }
    computing_ = false;
  }
  queue_mu_.Unlock();
  return me.status;
}

absl::Status ExpertService::ComputeRound(const std::vector<Pending*>& round) {
  const ModelConfig& c = model_->config();
  const int64_t h = c.hidden_size;
  std::lock_guard<std::mutex> lock(mu_);
  if (round_hook_) round_hook_(round.size());
  AdoptCpuThreads();  // gRPC's handler threads start from OpenMP's default
  const auto start = std::chrono::steady_clock::now();
  ++stats_.rounds;
  stats_.requests += static_cast<int64_t>(round.size());
  if (round.size() > 1) stats_.merged_requests += static_cast<int64_t>(round.size());
  // (layer, expert) -> its batches in the round: (request, batch index), in arrival order.
  std::map<std::pair<int32_t, int32_t>, std::vector<std::pair<size_t, int>>> groups;
  for (size_t r = 0; r < round.size(); ++r) {
    const v1::ExpertRequest& request = *round[r]->request;
    for (int i = 0; i < request.batches_size(); ++i) {
      const v1::ExpertBatch& b = request.batches(i);
      const int64_t n = (*round[r]->inputs)[i].shape[0];
      stats_.tokens[{b.layer(), b.expert()}] += n;
      ++stats_.batches;
      // Every output exists (in batch order) before any is filled.
      v1::Tensor* out = round[r]->response->add_outputs();
      const int64_t empty_shape[] = {0, h};
      if (n == 0) {
        EncodeF32(nullptr, empty_shape, out);
      } else {
        groups[{b.layer(), b.expert()}].push_back({r, i});
      }
    }
  }
  BatchLayout layout;  // experts are per token: no sequence state involved
  ForwardContext ctx{backend_.get(), &layout, &workspace_, &c};
  std::vector<float> x, y;
  for (const auto& [key, members] : groups) {
    int64_t rows = 0;
    for (const auto& [r, i] : members) rows += (*round[r]->inputs)[i].shape[0];
    x.resize(static_cast<size_t>(rows * h));
    int64_t at = 0;
    for (const auto& [r, i] : members) {
      const WireF32View& in = (*round[r]->inputs)[i];
      std::memcpy(x.data() + at * h, in.data, static_cast<size_t>(in.shape[0] * h) * 4);
      at += in.shape[0];
    }
    workspace_.Reset();
    Tensor xd = workspace_.Take(DType::kF32, {rows, h});
    JAMBA_RETURN_IF_ERROR(backend_->Upload(x.data(), x.size() * sizeof(float), xd));
    Tensor yd = workspace_.Take(DType::kF32, {rows, h});
    model_->ExpertForward(ctx, key.first, key.second, xd, yd);
    y.resize(x.size());
    JAMBA_RETURN_IF_ERROR(backend_->Download(yd, y.data()));
    at = 0;
    for (const auto& [r, i] : members) {
      const int64_t n = (*round[r]->inputs)[i].shape[0];
      const int64_t shape[] = {n, h};
      EncodeF32(y.data() + at * h, shape, round[r]->response->mutable_outputs(i));
      at += n;
    }
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
