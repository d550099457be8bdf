#include "layer-worker/layer_service.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/grpc_status.h"

namespace jamba {
namespace {

LogitsRows FromProto(v1::LogitsRows rows) {
  switch (rows) {
    case v1::LOGITS_ROWS_LAST:
      return LogitsRows::kLast;
    case v1::LOGITS_ROWS_ALL:
      return LogitsRows::kAll;
    case v1::LOGITS_ROWS_LAST_TOKEN:
    case v1::LOGITS_ROWS_SAMPLED_TOKEN:
      return LogitsRows::kLastToken;
    default:
      return LogitsRows::kNone;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LayerService>> LayerService::Create(
    const LayerWorkerConfig& config, std::unique_ptr<Backend> backend) {
  LoadOptions load;
  load.weight_dtype = config.weight_dtype;
  load.int8_experts = config.int8_experts;
  load.shard.layer_begin = config.layer_begin;
  load.shard.layer_end = config.layer_end;
  if (!config.expert_workers.empty()) {
    load.shard.want_expert = [](int64_t, int64_t) { return false; };  // routers only
  }
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(config.model_dir, load, backend.get()));
  const ModelConfig& c = model->config();

  std::unique_ptr<LayerService> service(new LayerService());
  if (!config.expert_workers.empty()) {
    JAMBA_ASSIGN_OR_RETURN(service->remote_,
                           RemoteExperts::Connect(config.expert_workers, model->fingerprint(),
                                                  c.hidden_size, config.remote));
  }
  for (int64_t layer = model->layer_begin(); layer < model->layer_end(); ++layer) {
    if (c.layers[layer].ffn != FfnKind::kMoe) continue;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      if (model->HoldsExpert(layer, e)) continue;
      if (service->remote_ != nullptr && service->remote_->Holds(layer, e)) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          "expert ", e, " of MoE layer ", layer, " is held by none of the expert workers (",
          config.expert_workers.size(), " given); start one with --experts covering it"));
    }
  }
  service->fingerprint_ = model->fingerprint();
  StageOptions so = config.stage;
  so.experts = service->remote_.get();
  absl::MutexLock lock(&service->mu_);
  JAMBA_ASSIGN_OR_RETURN(service->stage_, Stage::Create(std::move(model), so, backend.get()));
  service->backend_ = std::move(backend);
  return service;
}

absl::Status LayerService::DoCreate(const v1::CreateSequencesRequest& request) {
  std::vector<SequenceId> ids(request.sequence_ids().begin(), request.sequence_ids().end());
  if (ids.empty()) return absl::InvalidArgumentError("sequence_ids: empty");
  absl::MutexLock lock(&mu_);
  return stage_->AddSequences(ids);
}

void LayerService::DoRelease(const v1::ReleaseSequencesRequest& request) {
  std::vector<SequenceId> ids(request.sequence_ids().begin(), request.sequence_ids().end());
  absl::MutexLock lock(&mu_);
  stage_->RemoveSequences(ids);
}

absl::Status LayerService::DoForward(const v1::ForwardRequest& request,
                                     v1::ForwardResponse* response) {
  std::vector<StageItem> items;
  items.reserve(request.sequences_size());
  for (const v1::SequenceSlice& s : request.sequences()) {
    RowSampling sampling;  // greedy unless SAMPLED_TOKEN; the stage checks the ranges
    if (s.logits() == v1::LOGITS_ROWS_SAMPLED_TOKEN) {
      if (!s.has_sampling()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence ", s.sequence_id(), ": LOGITS_ROWS_SAMPLED_TOKEN without sampling"));
      }
      const v1::RowSampling& p = s.sampling();
      if (p.temperature() == 0.0f) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s.sequence_id(),
                         ": sampling.temperature must be > 0 (greedy rows use LAST_TOKEN)"));
      }
      sampling = RowSampling{p.uniform(), p.temperature(), p.top_k(), p.top_p(), p.min_p()};
    }
    items.push_back(StageItem{static_cast<SequenceId>(s.sequence_id()), s.n_tokens(), s.n_past(),
                              FromProto(s.logits()), sampling});
  }
  StageInput input;
  std::vector<float> hidden;  // [n_tokens, H] f32: a copy, only for a misaligned wire buffer
  if (request.has_token_ids()) {
    input.token_ids =
        absl::MakeConstSpan(request.token_ids().ids().data(), request.token_ids().ids_size());
  } else if (request.has_hidden()) {
    JAMBA_ASSIGN_OR_RETURN(WireF32View view, ViewF32(request.hidden(), 2, "hidden"));
    // The stage only uploads these bytes to the backend (a byte copy), so the request's own
    // buffer serves when it is float-aligned, as heap strings are: no copy per stage per step.
    if (reinterpret_cast<uintptr_t>(view.data) % alignof(float) == 0) {
      input.hidden = absl::MakeConstSpan(static_cast<const float*>(view.data),
                                         static_cast<size_t>(view.numel));
    } else {
      hidden.resize(static_cast<size_t>(view.numel));
      std::memcpy(hidden.data(), view.data, hidden.size() * sizeof(float));
      input.hidden = hidden;
    }
  } else {
    return absl::InvalidArgumentError("input: neither token_ids nor hidden is set");
  }
  absl::MutexLock lock(&mu_);
  const int64_t wait_before = remote_ != nullptr ? remote_->wait_micros() : 0;
  const absl::Time start = absl::Now();
  JAMBA_ASSIGN_OR_RETURN(StageOutput out, stage_->Forward(items, input));
  ++forward_calls_;
  forward_seconds_ += absl::ToDoubleSeconds(absl::Now() - start);
  for (const StageItem& item : items) forward_tokens_ += item.n_tokens;
  if (remote_ != nullptr) response->set_expert_wait_micros(remote_->wait_micros() - wait_before);
  if (stage_->model().has_head()) {
    const int64_t rows = out.logits.vocab == 0
                             ? 0
                             : static_cast<int64_t>(out.logits.logits.size()) / out.logits.vocab;
    EncodeF32(out.logits.logits.data(), {rows, out.logits.vocab}, response->mutable_logits());
    for (int32_t token : out.logits.token) {
      if (token >= 0) response->add_tokens(token);
    }
  } else {
    const int64_t h = stage_->config().hidden_size;
    EncodeF32(out.hidden.data(), {static_cast<int64_t>(out.hidden.size()) / h, h},
              response->mutable_hidden());
  }
  return absl::OkStatus();
}

void LayerService::DoShardInfo(v1::ShardInfoResponse* r) {
  absl::MutexLock lock(&mu_);
  const Model& m = stage_->model();
  const StageStats s = stage_->Stats();
  r->set_fingerprint(m.fingerprint());
  r->set_layer_begin(static_cast<int32_t>(m.layer_begin()));
  r->set_layer_end(static_cast<int32_t>(m.layer_end()));
  r->set_has_embedding(m.has_embedding());
  r->set_has_head(m.has_head());
  r->set_kv_blocks_used(s.kv_blocks_used);
  r->set_kv_blocks_total(s.kv_blocks_total);
  r->set_mamba_slots_used(s.mamba_slots_used);
  r->set_mamba_slots_total(s.mamba_slots_total);
  r->set_live_sequences(s.live_sequences);
  r->set_max_sequences(s.max_sequences);
  r->set_kv_block_size(s.kv_block_size);
  r->set_max_context(stage_->max_context());
  r->set_kv_bytes_per_token(s.kv_bytes_per_token);
  r->set_mamba_bytes_per_sequence(s.mamba_bytes_per_sequence);
  r->set_weight_bytes(s.weight_bytes);
  const ModelConfig& c = m.config();
  for (int64_t layer = m.layer_begin(); layer < m.layer_end(); ++layer) {
    if (c.layers[layer].ffn != FfnKind::kMoe) continue;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      if (!m.HoldsExpert(layer, e)) continue;
      v1::ExpertKey* k = r->add_local_experts();
      k->set_layer(static_cast<int32_t>(layer));
      k->set_expert(static_cast<int32_t>(e));
    }
  }
  if (remote_ != nullptr) {
    for (const ExpertWorkerStats& w : remote_->Stats()) {
      v1::WorkerInfo* info = r->add_expert_workers();
      info->set_address(w.address);
      info->set_role("expert");
      for (const auto& [layer, expert] : w.experts) {
        v1::ExpertKey* k = info->add_experts();
        k->set_layer(layer);
        k->set_expert(expert);
      }
    }
  }
}

LayerService::Stats LayerService::GetStats() {
  Stats s;
  {
    absl::MutexLock lock(&mu_);
    s.stage = stage_->Stats();
    s.forward_calls = forward_calls_;
    s.forward_seconds = forward_seconds_;
    s.forward_tokens = forward_tokens_;
  }
  if (remote_ != nullptr) {
    s.expert_wait_micros = remote_->wait_micros();
    s.expert_workers = remote_->Stats();
  }
  return s;
}

grpc::Status LayerService::CreateSequences(grpc::ServerContext*,
                                           const v1::CreateSequencesRequest* request,
                                           v1::CreateSequencesResponse*) {
  return ToGrpcStatus(DoCreate(*request));
}

grpc::Status LayerService::ReleaseSequences(grpc::ServerContext*,
                                            const v1::ReleaseSequencesRequest* request,
                                            v1::ReleaseSequencesResponse*) {
  DoRelease(*request);
  return grpc::Status::OK;
}

grpc::Status LayerService::Forward(grpc::ServerContext*, const v1::ForwardRequest* request,
                                   v1::ForwardResponse* response) {
  return ToGrpcStatus(DoForward(*request, response));
}

grpc::Status LayerService::ShardInfo(grpc::ServerContext*, const v1::ShardInfoRequest*,
                                     v1::ShardInfoResponse* response) {
  DoShardInfo(response);
  return grpc::Status::OK;
}

}  // namespace jamba
