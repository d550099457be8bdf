#include "gateway/jamba_service.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/utf8.h"
#include "rpc/grpc_status.h"

namespace jamba {
namespace {

// How often a streaming handler looks at its call's cancellation and deadline while it waits
// for tokens.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

// "top_p must be ..." from the engine becomes "sampling.top_p must be ...".
absl::Status Field(const absl::Status& s, absl::string_view prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, ".", s.message()));
}

absl::Status CheckUtf8(absl::string_view text, absl::string_view field) {
  const size_t valid = ValidUtf8PrefixLength(text);
  if (valid == text.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": malformed UTF-8 at byte ", valid));
}

absl::StatusOr<SamplingParams> FromProto(const v1::SamplingParams& p, int32_t vocab) {
  SamplingParams s;
  if (p.has_temperature()) s.temperature = p.temperature();
  s.top_k = p.top_k();
  if (p.has_top_p()) s.top_p = p.top_p();
  s.min_p = p.min_p();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_seed()) s.seed = p.seed();
  if (p.max_new_tokens() != 0) s.max_new_tokens = p.max_new_tokens();
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  for (int i = 0; i < p.stop_size(); ++i) {
    JAMBA_RETURN_IF_ERROR(CheckUtf8(p.stop(i), absl::StrCat("sampling.stop[", i, "]")));
    s.stop_strings.push_back(p.stop(i));
  }
  s.ignore_eos = p.ignore_eos();
  if (p.has_logprobs()) s.logprobs = p.logprobs();
  if (p.has_prompt_logprobs()) s.prompt_logprobs = p.prompt_logprobs();
  absl::Status valid = ValidateSamplingParams(s, vocab);
  if (!valid.ok()) return Field(valid, "sampling");
  return s;
}

void ToProto(const TokenLogprob& in, v1::TokenLogprob* out) {
  out->set_token_id(in.token);
  out->set_logprob(in.logprob);
  for (const auto& [token, logprob] : in.top) {
    v1::TopLogprob* o = out->add_top();
    o->set_token_id(token);
    o->set_logprob(logprob);
  }
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

// Appends an update's tokens to a chunk-shaped message (GenerateChunk or GenerateResponse).
template <typename Message>
void AppendUpdate(const StreamUpdate& u, Message* m) {
  std::string* text = m->mutable_text();
  for (const TokenEvent& e : u.events) {
    m->add_token_ids(e.token);
    text->append(e.text);
    if (e.logprob.has_value()) ToProto(*e.logprob, m->add_logprobs());
  }
  for (const TokenLogprob& lp : u.prompt_logprobs) ToProto(lp, m->add_prompt_logprobs());
  if (u.done && u.status.ok()) {
    m->set_finish_reason(ToProto(u.finish_reason));
    m->mutable_usage()->set_prompt_tokens(static_cast<int32_t>(u.prompt_tokens));
    m->mutable_usage()->set_completion_tokens(static_cast<int32_t>(u.completion_tokens));
  }
}

}  // namespace

JambaService::JambaService(const ModelConfig* config, std::string fingerprint,
                           const Tokenizer* tokenizer, Scheduler* scheduler,
                           std::vector<const Pipeline*> pipelines, int64_t max_context)
    : config_(config),
      fingerprint_(std::move(fingerprint)),
      tokenizer_(tokenizer),
      scheduler_(scheduler),
      pipelines_(std::move(pipelines)),
      max_context_(max_context) {}

absl::StatusOr<std::unique_ptr<Completion>> JambaService::Prepare(
    const v1::GenerateRequest& request) const {
  const int32_t vocab = static_cast<int32_t>(config_->vocab_size);
  std::vector<int32_t> prompt;
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      const std::string& text = request.text();
      if (text.empty()) return absl::InvalidArgumentError("prompt.text: empty");
      JAMBA_RETURN_IF_ERROR(CheckUtf8(text, "prompt.text"));
      if (tokenizer_ == nullptr) {
        return absl::InvalidArgumentError(
            "prompt.text: this model folder has no tokenizer.json; send prompt.token_ids");
      }
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer_->Encode(text, !request.skip_special_tokens_in_prompt());
      if (!ids.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("prompt.text: ", ids.status().message()));
      }
      prompt = *std::move(ids);
      if (prompt.empty()) return absl::InvalidArgumentError("prompt.text: encodes to no tokens");
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return absl::InvalidArgumentError("prompt.token_ids: empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= vocab) {
          return absl::InvalidArgumentError(
              absl::StrCat("prompt.token_ids: id ", ids[i], " at position ", i,
                           " is outside the vocabulary [0, ", vocab, ")"));
        }
      }
      prompt.assign(ids.begin(), ids.end());
      break;
    }
    default:
      return absl::InvalidArgumentError("prompt: set either text or token_ids");
  }
  JAMBA_ASSIGN_OR_RETURN(SamplingParams params, FromProto(request.sampling(), vocab));
  absl::StatusOr<std::unique_ptr<Completion>> c =
      Completion::Create(*config_, tokenizer_, std::move(prompt), params, max_context_);
  // A prompt too long for the context is the request's fault, not the server's range.
  if (!c.ok() && absl::IsOutOfRange(c.status())) {
    return absl::InvalidArgumentError(c.status().message());
  }
  return c;
}

grpc::Status JambaService::Serve(grpc::ServerContext* context, const v1::GenerateRequest& request,
                                 const std::function<bool(const StreamUpdate&)>& deliver) {
  absl::StatusOr<std::unique_ptr<Completion>> completion = Prepare(request);
  if (!completion.ok()) return ToGrpcStatus(completion.status());
  absl::StatusOr<std::shared_ptr<RequestStream>> stream =
      scheduler_->Submit(*std::move(completion));
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  while (true) {
    if (context->IsCancelled()) {
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled or past its deadline");
    }
    StreamUpdate u;
    if (!(*stream)->Take(kPollInterval, &u)) continue;
    if (!deliver(u)) {  // the client is gone
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading");
    }
    if (u.done) return ToGrpcStatus(u.status);
  }
}

grpc::Status JambaService::Generate(grpc::ServerContext* context,
                                    const v1::GenerateRequest* request,
                                    grpc::ServerWriter<v1::GenerateChunk>* writer) {
  return Serve(context, *request, [writer](const StreamUpdate& u) {
    if (u.events.empty() && !(u.done && u.status.ok())) return true;  // nothing to send
    v1::GenerateChunk chunk;
    AppendUpdate(u, &chunk);
    return writer->Write(chunk);
  });
}

grpc::Status JambaService::GenerateUnary(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         v1::GenerateResponse* response) {
  return Serve(context, *request, [response](const StreamUpdate& u) {
    AppendUpdate(u, response);
    return true;
  });
}

grpc::Status JambaService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                                    v1::TokenizeResponse* response) {
  if (tokenizer_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this model folder has no tokenizer.json");
  }
  absl::Status utf8 = CheckUtf8(request->text(), "text");
  if (!utf8.ok()) return ToGrpcStatus(utf8);
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer_->Encode(request->text(), request->add_special_tokens());
  if (!ids.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("text: ", ids.status().message())));
  }
  response->mutable_token_ids()->Add(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status JambaService::Detokenize(grpc::ServerContext*, const v1::DetokenizeRequest* request,
                                      v1::DetokenizeResponse* response) {
  if (tokenizer_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this model folder has no tokenizer.json");
  }
  std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!tokenizer_->IsValidId(ids[i])) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token_ids: id ", ids[i], " at position ", i,
                                       " is not in the tokenizer's vocabulary"));
    }
  }
  absl::StatusOr<std::string> text = tokenizer_->Decode(ids, request->skip_special_tokens());
  if (!text.ok()) return ToGrpcStatus(text.status());
  // Ids that end inside a UTF-8 sequence decode to bytes a string field cannot carry.
  response->set_text(Utf8Lossy(*text));
  return grpc::Status::OK;
}

absl::Status JambaService::DescribeModel(v1::ModelInfoResponse* r) const {
  r->set_architecture(ArchitectureName(config_->arch));
  for (const LayerSpec& l : config_->layers) {
    v1::LayerInfo* info = r->add_layers();
    info->set_mixer(l.mixer == MixerKind::kMamba ? "mamba" : "attention");
    info->set_ffn(l.ffn == FfnKind::kMoe ? "moe" : l.ffn == FfnKind::kDense ? "mlp" : "none");
  }
  r->set_context_limit(max_context_);
  r->set_vocab_size(static_cast<int32_t>(config_->vocab_size));
  r->set_fingerprint(fingerprint_);
  std::vector<std::string> experts_seen;
  for (size_t p = 0; p < pipelines_.size(); ++p) {
    JAMBA_ASSIGN_OR_RETURN(std::vector<v1::ShardInfoResponse> shards, pipelines_[p]->ShardInfos());
    for (size_t i = 0; i < shards.size(); ++i) {
      v1::WorkerInfo* w = r->add_workers();
      w->set_address(pipelines_[p]->addresses()[i]);
      w->set_role("layer");
      w->set_layer_begin(shards[i].layer_begin());
      w->set_layer_end(shards[i].layer_end());
      w->set_pipeline(static_cast<int32_t>(p));
      *w->mutable_experts() = shards[i].local_experts();
    }
    // Expert workers, once each however many pipelines share them.
    for (const v1::ShardInfoResponse& s : shards) {
      for (const v1::WorkerInfo& e : s.expert_workers()) {
        bool seen = false;
        for (const std::string& a : experts_seen) seen = seen || a == e.address();
        if (seen) continue;
        experts_seen.push_back(e.address());
        *r->add_workers() = e;
      }
    }
  }
  return absl::OkStatus();
}

grpc::Status JambaService::ModelInfo(grpc::ServerContext*, const v1::ModelInfoRequest*,
                                     v1::ModelInfoResponse* response) {
  return ToGrpcStatus(DescribeModel(response));
}

}  // namespace jamba
