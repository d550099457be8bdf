#include "tests/client/fake_jamba_service.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace jamba {

void FakeJambaService::set_behavior(FakeBehavior behavior) {
  absl::MutexLock lock(&mu_);
  behavior_ = std::move(behavior);
}

int FakeJambaService::calls(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

bool FakeJambaService::WaitForCalls(const std::string& method, int n,
                                    absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, &method, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = calls_.find(method);
    return it != calls_.end() && it->second >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

bool FakeJambaService::WaitForCancelledCalls(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return cancelled_calls_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

v1::GenerateRequest FakeJambaService::last_generate_request() const {
  absl::MutexLock lock(&mu_);
  return last_generate_request_;
}

grpc::Status FakeJambaService::BeginCall(const std::string& method, FakeBehavior* behavior) {
  int call;
  {
    absl::MutexLock lock(&mu_);
    *behavior = behavior_;
    call = ++calls_[method];
  }
  if (call <= behavior->unavailable_calls) {
    absl::SleepFor(behavior->unavailable_after);  // outside mu_: other calls go on meanwhile
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("fake: unavailable (call ", call, ")"));
  }
  return behavior->error;
}

grpc::Status FakeJambaService::HoldUntilCancelled(grpc::ServerContext* context) {
  // Polling is the only way a synchronous handler learns of a cancellation.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (!context->IsCancelled()) {
    if (absl::Now() > give_up) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "fake: the client never cancelled");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  absl::MutexLock lock(&mu_);
  ++cancelled_calls_;
  return grpc::Status::CANCELLED;
}

grpc::Status FakeJambaService::Generate(grpc::ServerContext* context,
                                        const v1::GenerateRequest* request,
                                        grpc::ServerWriter<v1::GenerateChunk>* writer) {
  {
    absl::MutexLock lock(&mu_);
    last_generate_request_ = *request;
  }
  FakeBehavior b;
  if (grpc::Status s = BeginCall("Generate", &b); !s.ok()) return s;
  for (const v1::GenerateChunk& chunk : b.chunks) {
    if (!writer->Write(chunk)) return grpc::Status::CANCELLED;
  }
  if (b.hang_after_chunks) return HoldUntilCancelled(context);
  return b.status_after_chunks;
}

grpc::Status FakeJambaService::GenerateUnary(grpc::ServerContext* context,
                                             const v1::GenerateRequest* request,
                                             v1::GenerateResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_generate_request_ = *request;
  }
  FakeBehavior b;
  if (grpc::Status s = BeginCall("GenerateUnary", &b); !s.ok()) return s;
  if (b.hang_after_chunks) return HoldUntilCancelled(context);
  for (const v1::GenerateChunk& c : b.chunks) {
    response->mutable_token_ids()->MergeFrom(c.token_ids());
    response->mutable_text()->append(c.text());
    if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      response->set_finish_reason(c.finish_reason());
    }
    if (c.has_usage()) *response->mutable_usage() = c.usage();
  }
  return b.status_after_chunks;
}

grpc::Status FakeJambaService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                                        v1::TokenizeResponse* response) {
  FakeBehavior b;
  if (grpc::Status s = BeginCall("Tokenize", &b); !s.ok()) return s;
  for (unsigned char c : request->text()) response->add_token_ids(c);
  return grpc::Status::OK;
}

grpc::Status FakeJambaService::Detokenize(grpc::ServerContext*,
                                          const v1::DetokenizeRequest* request,
                                          v1::DetokenizeResponse* response) {
  FakeBehavior b;
  if (grpc::Status s = BeginCall("Detokenize", &b); !s.ok()) return s;
  for (int32_t id : request->token_ids())
    response->mutable_text()->push_back(static_cast<char>(id));
  return grpc::Status::OK;
}

grpc::Status FakeJambaService::ModelInfo(grpc::ServerContext*, const v1::ModelInfoRequest*,
                                         v1::ModelInfoResponse* response) {
  FakeBehavior b;
  if (grpc::Status s = BeginCall("ModelInfo", &b); !s.ok()) return s;
  *response = b.model_info;
  return grpc::Status::OK;
}

v1::GenerateChunk Chunk(std::vector<int32_t> token_ids, const std::string& text) {
  v1::GenerateChunk chunk;
  chunk.mutable_token_ids()->Add(token_ids.begin(), token_ids.end());
  chunk.set_text(text);
  return chunk;
}

v1::GenerateChunk FinalChunk(std::vector<int32_t> token_ids, const std::string& text,
                             v1::FinishReason reason, int prompt_tokens, int completion_tokens) {
  v1::GenerateChunk chunk = Chunk(std::move(token_ids), text);
  chunk.set_finish_reason(reason);
  chunk.mutable_usage()->set_prompt_tokens(prompt_tokens);
  chunk.mutable_usage()->set_completion_tokens(completion_tokens);
  return chunk;
}

}  // namespace jamba
