#include "layer-worker/layer_service.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "rpc/stage_error.h"

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

// Splits items [0, n) into at most `parts` contiguous groups of near-equal token counts;
// returns the groups' first items (and n at the end).
std::vector<size_t> SplitItems(absl::Span<const StageItem> items, int32_t parts) {
  int64_t total = 0;
  for (const StageItem& item : items) total += item.n_tokens;
  const size_t n = items.size();
  const size_t groups = std::min<size_t>(n, static_cast<size_t>(std::max(parts, 1)));
  std::vector<size_t> begin = {0};
  int64_t sum = 0;
  for (size_t i = 0; i < n && begin.size() < groups; ++i) {
    sum += items[i].n_tokens;
    const size_t left = n - (i + 1);  // items after i
    const size_t groups_left = groups - begin.size();
    // Cut after item i once its group holds its share, keeping an item for every group left.
    if (left >= groups_left &&
        (sum * static_cast<int64_t>(groups) >= total * static_cast<int64_t>(begin.size()) ||
         left == groups_left)) {
      begin.push_back(i + 1);
    }
  }
  begin.push_back(n);
  return begin;
}

// Appends `part` (a micro-batch's output) to `out`.
void AppendOutput(StageOutput&& part, StageOutput* out) {
  out->hidden.insert(out->hidden.end(), part.hidden.begin(), part.hidden.end());
  StepOutput& a = out->logits;
  StepOutput& b = part.logits;
  const int64_t rows_before = a.vocab == 0 ? 0 : static_cast<int64_t>(a.logits.size()) / a.vocab;
  if (b.vocab != 0) a.vocab = b.vocab;
  a.logits.insert(a.logits.end(), b.logits.begin(), b.logits.end());
  for (int64_t r : b.row_begin) a.row_begin.push_back(r + rows_before);
  a.row_count.insert(a.row_count.end(), b.row_count.begin(), b.row_count.end());
  a.token.insert(a.token.end(), b.token.begin(), b.token.end());
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
  service->micro_batches_ = service->remote_ != nullptr ? std::max(config.micro_batches, 1) : 1;
  service->next_stage_timeout_ = config.next_stage_timeout;
  StageOptions so = config.stage;
  so.experts = service->remote_.get();
  JAMBA_ASSIGN_OR_RETURN(service->stage_, Stage::Create(std::move(model), so, backend.get()));
  service->backend_ = std::move(backend);
  service->runner_ = std::make_unique<StageRunner>(service->stage_.get(), service->remote_.get());
  return service;
}

absl::Status LayerService::DoCreate(const v1::CreateSequencesRequest& request) {
  std::vector<SequenceId> ids(request.sequence_ids().begin(), request.sequence_ids().end());
  if (ids.empty()) return absl::InvalidArgumentError("sequence_ids: empty");
  const std::vector<int64_t> reserve(request.reserve_tokens().begin(),
                                     request.reserve_tokens().end());
  return runner_->WithStage([&](Stage& stage) { return stage.AddSequences(ids, reserve); });
}

void LayerService::DoRelease(const v1::ReleaseSequencesRequest& request) {
  std::vector<SequenceId> ids(request.sequence_ids().begin(), request.sequence_ids().end());
  runner_->WithStage([&](Stage& stage) { return stage.RemoveSequences(ids); });
}

absl::Status LayerService::DoForward(const v1::ForwardRequest& request,
                                     v1::ForwardResponse* response, grpc::ServerContext* context) {
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
  const absl::Time start = absl::Now();
  int64_t tokens = 0;
  for (const StageItem& item : items) tokens += item.n_tokens;
  JAMBA_ASSIGN_OR_RETURN(StageOutput out, Compute(std::move(items), input));
  {
    absl::MutexLock lock(&mu_);
    ++forward_calls_;
    forward_seconds_ += absl::ToDoubleSeconds(absl::Now() - start);
    forward_tokens_ += tokens;
  }
  const Model& m = stage_->model();  // immutable once loaded
  if (m.has_head()) {
    const int64_t rows = out.logits.vocab == 0
                             ? 0
                             : static_cast<int64_t>(out.logits.logits.size()) / out.logits.vocab;
    EncodeF32(out.logits.logits.data(), {rows, out.logits.vocab}, response->mutable_logits());
    for (int32_t token : out.logits.token) {
      if (token >= 0) response->add_tokens(token);
    }
  } else if (request.route_size() > 0) {
    JAMBA_RETURN_IF_ERROR(ForwardToNext(request, std::move(out.hidden), response, context));
  } else {
    const int64_t h = m.config().hidden_size;
    EncodeF32(out.hidden.data(), {static_cast<int64_t>(out.hidden.size()) / h, h},
              response->mutable_hidden());
  }
  return absl::OkStatus();
}

absl::StatusOr<StageOutput> LayerService::Compute(std::vector<StageItem> items,
                                                  const StageInput& input) {
  int64_t total = 0;
  bool valid = true;
  for (const StageItem& item : items) {
    valid = valid && item.n_tokens >= 1;
    total += item.n_tokens;
  }
  const int64_t h = stage_->config().hidden_size;
  // A batch whose input does not match its items is not split: the stage reports it whole.
  valid = valid &&
          (input.token_ids.empty() || static_cast<int64_t>(input.token_ids.size()) == total) &&
          (input.hidden.empty() || static_cast<int64_t>(input.hidden.size()) == total * h);
  if (micro_batches_ <= 1 || items.size() < 2 || !valid) {
    return runner_->Forward(std::move(items), input);
  }
  const std::vector<size_t> begin = SplitItems(items, micro_batches_);
  const size_t parts = begin.size() - 1;
  absl::Mutex mu;
  size_t pending = parts;
  std::vector<absl::StatusOr<StageOutput>> results(parts);
  int64_t token = 0;
  for (size_t p = 0; p < parts; ++p) {
    std::vector<StageItem> part(items.begin() + begin[p], items.begin() + begin[p + 1]);
    int64_t n = 0;
    for (const StageItem& item : part) n += item.n_tokens;
    StageInput slice;
    if (!input.token_ids.empty()) slice.token_ids = input.token_ids.subspan(token, n);
    if (!input.hidden.empty()) slice.hidden = input.hidden.subspan(token * h, n * h);
    token += n;
    runner_->Submit(std::move(part), slice, [&, p](absl::StatusOr<StageOutput> r) {
      absl::MutexLock lock(&mu);
      results[p] = std::move(r);
      --pending;
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all_done = [&pending]() { return pending == 0; };
    mu.Await(absl::Condition(&all_done));
  }
  StageOutput out;
  for (absl::StatusOr<StageOutput>& r : results) {
    // A part that fails fails the batch; the other parts' sequences did advance, but the
    // gateway fails and releases every sequence of a failed batch.
    if (!r.ok()) return r.status();
    AppendOutput(*std::move(r), &out);
  }
  return out;
}

v1::LayerWorker::Stub* LayerService::NextStage(const std::string& address) {
  absl::MutexLock lock(&stubs_mu_);
  std::unique_ptr<v1::LayerWorker::Stub>& stub = next_stages_[address];
  if (stub == nullptr) stub = v1::LayerWorker::NewStub(MakeInternalChannel(address));
  return stub.get();
}

absl::Status LayerService::ForwardToNext(const v1::ForwardRequest& request,
                                         std::vector<float> hidden, v1::ForwardResponse* response,
                                         grpc::ServerContext* context) {
  const std::string& next = request.route(0);
  v1::ForwardRequest forward;
  *forward.mutable_sequences() = request.sequences();
  forward.mutable_route()->CopyFrom(request.route());
  forward.mutable_route()->erase(forward.mutable_route()->begin());
  const int64_t h = stage_->config().hidden_size;
  EncodeF32(hidden.data(), {static_cast<int64_t>(hidden.size()) / h, h}, forward.mutable_hidden());
  std::unique_ptr<grpc::ClientContext> ctx;
  if (context != nullptr) {
    ctx = grpc::ClientContext::FromServerContext(*context);
  } else {
    ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + next_stage_timeout_));
  }
  grpc::Status s = NextStage(next)->Forward(ctx.get(), forward, response);
  return ForwardCallStatus(*ctx, s, next);
}

void LayerService::DoShardInfo(v1::ShardInfoResponse* r) {
  const Model& m = stage_->model();
  const StageStats s = runner_->WithStage([](Stage& stage) { return stage.Stats(); });
  r->set_fingerprint(m.fingerprint());
  r->set_layer_begin(static_cast<int32_t>(m.layer_begin()));
  r->set_layer_end(static_cast<int32_t>(m.layer_end()));
  r->set_has_embedding(m.has_embedding());
  r->set_has_head(m.has_head());
  r->set_kv_blocks_used(s.kv_blocks_used);
  r->set_kv_blocks_total(s.kv_blocks_total);
  r->set_kv_blocks_reserved(s.kv_blocks_reserved);
  r->set_mamba_slots_used(s.mamba_slots_used);
  r->set_mamba_slots_total(s.mamba_slots_total);
  r->set_live_sequences(s.live_sequences);
  r->set_max_sequences(s.max_sequences);
  r->set_kv_block_size(s.kv_block_size);
  r->set_max_context(stage_->max_context());  // fixed at creation
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
  s.stage = runner_->WithStage([](Stage& stage) { return stage.Stats(); });
  s.busy_seconds = runner_->busy_seconds();
  s.max_open_batches = runner_->max_open();
  {
    absl::MutexLock lock(&mu_);
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

grpc::Status LayerService::Forward(grpc::ServerContext* context, const v1::ForwardRequest* request,
                                   v1::ForwardResponse* response) {
  return ToGrpcStatusWithStage(DoForward(*request, response, context), context);
}

grpc::Status LayerService::ShardInfo(grpc::ServerContext*, const v1::ShardInfoRequest*,
                                     v1::ShardInfoResponse* response) {
  DoShardInfo(response);
  return grpc::Status::OK;
}

}  // namespace jamba
