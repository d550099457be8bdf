// A scripted jamba.v1.Jamba service for client tests: it answers every method from a
// FakeBehavior (fail N times with UNAVAILABLE, fail with an error, stream given chunks, hold a
// call open until the client cancels it) and records what it saw.
#ifndef JAMBA_TESTS_CLIENT_FAKE_JAMBA_SERVICE_H_
#define JAMBA_TESTS_CLIENT_FAKE_JAMBA_SERVICE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "jamba/v1/generate.grpc.pb.h"

namespace jamba {

struct FakeBehavior {
  // The first this many calls of each method fail with UNAVAILABLE, before anything is sent.
  int unavailable_calls = 0;
  // How long each of those calls takes before it fails (a server slow to say no).
  absl::Duration unavailable_after = absl::ZeroDuration();
  // Then, if not OK, every call fails with this status before anything is sent.
  grpc::Status error = grpc::Status::OK;
  // Generate streams these (GenerateUnary answers them merged into one response) ...
  std::vector<v1::GenerateChunk> chunks;
  // ... then ends the stream with this status,
  grpc::Status status_after_chunks = grpc::Status::OK;
  // ... unless this is set: then Generate and GenerateUnary keep the call open until the client
  // cancels it or its deadline passes.
  bool hang_after_chunks = false;
  v1::ModelInfoResponse model_info;
};

class FakeJambaService final : public v1::Jamba::Service {
 public:
  void set_behavior(FakeBehavior behavior);

  // Calls of `method` ("Generate", "Tokenize", ...) so far, failed ones included.
  int calls(const std::string& method) const;
  // Waits until `method` has been called `n` times; false on timeout.
  bool WaitForCalls(const std::string& method, int n, absl::Duration timeout) const;
  // Waits until `n` held calls (hang_after_chunks) have seen their context cancelled.
  bool WaitForCancelledCalls(int n, absl::Duration timeout) const;
  v1::GenerateRequest last_generate_request() const;

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateChunk>* writer) override;
  grpc::Status GenerateUnary(grpc::ServerContext* context, const v1::GenerateRequest* request,
                             v1::GenerateResponse* response) override;
  // Token ids are the prompt's bytes; Detokenize is the reverse.
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest* request,
                         v1::ModelInfoResponse* response) override;

 private:
  // Counts the call; returns the failure it must answer with, if any (OK otherwise).
  grpc::Status BeginCall(const std::string& method, FakeBehavior* behavior);
  // Holds the call until its context is cancelled (30 s at most) and records that.
  grpc::Status HoldUntilCancelled(grpc::ServerContext* context);

  mutable absl::Mutex mu_;
  FakeBehavior behavior_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
  int cancelled_calls_ ABSL_GUARDED_BY(mu_) = 0;
  v1::GenerateRequest last_generate_request_ ABSL_GUARDED_BY(mu_);
};

// A chunk of new tokens and their text.
v1::GenerateChunk Chunk(std::vector<int32_t> token_ids, const std::string& text);
// The last chunk: maybe more tokens, the finish reason and usage.
v1::GenerateChunk FinalChunk(std::vector<int32_t> token_ids, const std::string& text,
                             v1::FinishReason reason, int prompt_tokens, int completion_tokens);

}  // namespace jamba

#endif  // JAMBA_TESTS_CLIENT_FAKE_JAMBA_SERVICE_H_
