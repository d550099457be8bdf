#include "gateway/pipeline.h"

#include <algorithm>
#include <cstring>

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

v1::LogitsRows ToProto(const StageItem& item) {
  switch (item.logits) {
    case LogitsRows::kLast:
      return v1::LOGITS_ROWS_LAST;
    case LogitsRows::kAll:
      return v1::LOGITS_ROWS_ALL;
    case LogitsRows::kLastToken:
      return item.sampling.temperature == 0.0f ? v1::LOGITS_ROWS_LAST_TOKEN
                                               : v1::LOGITS_ROWS_SAMPLED_TOKEN;
    default:
      return v1::LOGITS_ROWS_NONE;
  }
}

// Prefixes a worker's error with its address and the method, keeping the code.
absl::Status WorkerError(const std::string& address, const char* method, const grpc::Status& s) {
  return absl::Status(
      static_cast<absl::StatusCode>(s.error_code()),
      absl::StrCat("layer worker ", address, ": ", method, ": ", s.error_message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Connect(
    const std::vector<std::string>& addresses, const ModelConfig& c, const std::string& fingerprint,
    const PipelineOptions& options) {
  if (addresses.empty()) return absl::InvalidArgumentError("no layer workers given");
  std::unique_ptr<Pipeline> p(new Pipeline(options));
  p->addresses_ = addresses;
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  int64_t expected_begin = 0;
  ExecutorLimits& l = p->limits_;
  l.max_sequences = INT32_MAX;
  l.max_context = INT64_MAX;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const std::string& a = addresses[i];
    p->stubs_.push_back(v1::LayerWorker::NewStub(MakeInternalChannel(a)));
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(deadline));
    v1::ShardInfoResponse info;
    grpc::Status s = p->stubs_.back()->ShardInfo(&ctx, v1::ShardInfoRequest(), &info);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("layer worker ", a, " (stage ", i, ") did not answer: ", s.error_message()));
    }
    if (info.fingerprint() != fingerprint) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer worker ", a, " serves checkpoint ", info.fingerprint(),
                       ", the gateway ", fingerprint, ": every process must load the same model"));
    }
    if (info.layer_begin() != expected_begin || info.layer_end() <= info.layer_begin()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer worker ", a, " (stage ", i, ") holds layers [", info.layer_begin(), ", ",
          info.layer_end(), "), expected a range starting at layer ", expected_begin,
          ": stages must be given in order and cover every layer once"));
    }
    if (info.has_embedding() != (i == 0)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer worker ", a, ": only the first stage may (and must) hold the embedding"));
    }
    const bool last = i + 1 == addresses.size();
    if (info.has_head() != last) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer worker ", a, ": only the last stage may (and must) hold the head"));
    }
    expected_begin = info.layer_end();
    l.max_sequences = std::min(l.max_sequences, info.max_sequences());
    l.max_context = std::min(l.max_context, info.max_context());
    if (info.kv_blocks_total() > 0) {
      if (l.kv_block_size != 0 && l.kv_block_size != info.kv_block_size()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "layer worker ", a, " uses KV blocks of ", info.kv_block_size(),
            " positions, an earlier stage ", l.kv_block_size, ": start all with the same"));
      }
      l.kv_block_size = info.kv_block_size();
      l.kv_blocks = l.kv_blocks < 0 ? info.kv_blocks_total()
                                    : std::min<int64_t>(l.kv_blocks, info.kv_blocks_total());
    }
  }
  if (expected_begin != c.num_layers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the layer workers hold layers [0, ", expected_begin, ") of the model's ", c.num_layers));
  }
  return p;
}

absl::Status Pipeline::Create(absl::Span<const SequenceId> ids,
                              absl::Span<const int64_t> reserve_tokens) {
  v1::CreateSequencesRequest request;
  for (SequenceId id : ids) request.add_sequence_ids(static_cast<uint64_t>(id));
  request.mutable_reserve_tokens()->Add(reserve_tokens.begin(), reserve_tokens.end());
  for (size_t i = 0; i < stubs_.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    v1::CreateSequencesResponse response;
    grpc::Status s = stubs_[i]->CreateSequences(&ctx, request, &response);
    if (!s.ok()) {
      // Undo the stages that did create them, so a failed admission leaks nothing.
      v1::ReleaseSequencesRequest undo;
      *undo.mutable_sequence_ids() = request.sequence_ids();
      for (size_t j = 0; j < i; ++j) {
        grpc::ClientContext uctx;
        uctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
        v1::ReleaseSequencesResponse ur;
        stubs_[j]->ReleaseSequences(&uctx, undo, &ur);
      }
      return WorkerError(addresses_[i], "CreateSequences", s);
    }
  }
  return absl::OkStatus();
}

absl::Status Pipeline::Release(absl::Span<const SequenceId> ids) {
  v1::ReleaseSequencesRequest request;
  for (SequenceId id : ids) request.add_sequence_ids(static_cast<uint64_t>(id));
  absl::Status first_error;
  for (size_t i = 0; i < stubs_.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    v1::ReleaseSequencesResponse response;
    grpc::Status s = stubs_[i]->ReleaseSequences(&ctx, request, &response);
    if (!s.ok() && first_error.ok()) first_error = WorkerError(addresses_[i], "Release", s);
  }
  return first_error;
}

// One forward in flight: the request through the chain of stages and what is needed to read
// the answer.
struct Pipeline::Call {
  grpc::ClientContext ctx;
  v1::ForwardRequest request;
  v1::ForwardResponse response;
  std::vector<LogitsRows> logits;  // per item
  StepOutput out;                  // row_begin, row_count and token laid out at the start
  int64_t rows = 0, token_items = 0;
  ForwardDone done;
};

std::unique_ptr<Pipeline::Call> Pipeline::StartCall(absl::Span<const StageItem> items,
                                                    absl::Span<const int32_t> token_ids) const {
  auto call = std::make_unique<Call>();
  v1::ForwardRequest& request = call->request;
  StepOutput& out = call->out;
  for (const StageItem& item : items) {
    v1::SequenceSlice* s = request.add_sequences();
    s->set_sequence_id(static_cast<uint64_t>(item.sequence));
    s->set_n_tokens(item.n_tokens);
    s->set_n_past(item.n_past);
    s->set_logits(ToProto(item));
    if (s->logits() == v1::LOGITS_ROWS_SAMPLED_TOKEN) {
      v1::RowSampling* p = s->mutable_sampling();
      p->set_temperature(item.sampling.temperature);
      p->set_top_k(item.sampling.top_k);
      p->set_top_p(item.sampling.top_p);
      p->set_min_p(item.sampling.min_p);
      p->set_uniform(item.sampling.uniform);
    }
    const int64_t count = item.logits == LogitsRows::kAll    ? item.n_tokens
                          : item.logits == LogitsRows::kLast ? 1
                                                             : 0;
    out.row_begin.push_back(call->rows);
    out.row_count.push_back(count);
    out.token.push_back(-1);
    call->logits.push_back(item.logits);
    call->rows += count;
    if (item.logits == LogitsRows::kLastToken) ++call->token_items;
  }
  request.mutable_token_ids()->mutable_ids()->Add(token_ids.begin(), token_ids.end());
  for (size_t i = 1; i < addresses_.size(); ++i) request.add_route(addresses_[i]);
  call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
  return call;
}

absl::StatusOr<StepOutput> Pipeline::FinishCall(Call& call, const grpc::Status& status) const {
  JAMBA_RETURN_IF_ERROR(ForwardCallStatus(call.ctx, status, addresses_.front()));
  const v1::ForwardResponse& response = call.response;
  StepOutput& out = call.out;
  const std::string& last = addresses_.back();
  if (!response.has_logits()) {
    return absl::InternalError(absl::StrCat("layer worker ", last, ": Forward returned no logits"));
  }
  JAMBA_ASSIGN_OR_RETURN(WireF32View view, ViewF32(response.logits(), 2, "logits"));
  if (view.shape[0] != call.rows) {
    return absl::InternalError(absl::StrCat("layer worker ", last, ": returned ", view.shape[0],
                                            " logit rows, expected ", call.rows));
  }
  out.vocab = view.shape[1];
  out.logits.resize(static_cast<size_t>(view.numel));
  std::memcpy(out.logits.data(), view.data, out.logits.size() * sizeof(float));
  if (response.tokens_size() != call.token_items) {
    return absl::InternalError(absl::StrCat("layer worker ", last, ": returned ",
                                            response.tokens_size(), " sampled tokens, expected ",
                                            call.token_items));
  }
  for (size_t i = 0, t = 0; i < call.logits.size(); ++i) {
    if (call.logits[i] != LogitsRows::kLastToken) continue;
    const int32_t token = response.tokens(static_cast<int>(t++));
    if (token < 0 || token >= out.vocab) {
      return absl::InternalError(absl::StrCat("layer worker ", last, ": returned sampled token ",
                                              token, " outside the vocabulary"));
    }
    out.token[i] = token;
  }
  return std::move(out);
}

absl::StatusOr<StepOutput> Pipeline::Forward(absl::Span<const StageItem> items,
                                             absl::Span<const int32_t> token_ids) {
  std::unique_ptr<Call> call = StartCall(items, token_ids);
  grpc::Status s = stubs_.front()->Forward(&call->ctx, call->request, &call->response);
  return FinishCall(*call, s);
}

void Pipeline::ForwardAsync(std::vector<StageItem> items, std::vector<int32_t> token_ids,
                            ForwardDone done) {
  Call* call = StartCall(items, token_ids).release();
  call->done = std::move(done);
  stubs_.front()->async()->Forward(&call->ctx, &call->request, &call->response,
                                   [this, call](grpc::Status s) {
                                     // The call is freed before the result is reported: once
                                     // reported, the scheduler (and this pipeline) may go.
                                     std::unique_ptr<Call> owned(call);
                                     absl::StatusOr<StepOutput> out = FinishCall(*owned, s);
                                     ForwardDone done = std::move(owned->done);
                                     owned.reset();
                                     done(std::move(out));
                                   });
}

absl::StatusOr<std::vector<v1::ShardInfoResponse>> Pipeline::ShardInfos() const {
  std::vector<v1::ShardInfoResponse> out(stubs_.size());
  for (size_t i = 0; i < stubs_.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    grpc::Status s = stubs_[i]->ShardInfo(&ctx, v1::ShardInfoRequest(), &out[i]);
    if (!s.ok()) return WorkerError(addresses_[i], "ShardInfo", s);
  }
  return out;
}

}  // namespace jamba
