// The C++ client of a jamba-serving cluster's public API (jamba.v1.Jamba, served by the
// gateway), plus the standard grpc.health.v1 check.
//
// Errors. Every failed call returns an absl::Status whose code is the gRPC status code of the
// call, unchanged (absl and gRPC number their codes alike): INVALID_ARGUMENT for a request the
// server rejected, UNAVAILABLE when no server answered, DEADLINE_EXCEEDED when
// ClientOptions::deadline passed, CANCELLED after GenerateStream::Cancel(), and so on. The
// message is the server's (or gRPC's) message prefixed with the method name, e.g.
// "Generate: sampling.top_p must be in (0, 1]"; when the call was attempted more than once it
// ends with " (after N attempts)".
//
// Retries. A call that fails with UNAVAILABLE (no server reachable, or the server said so) is
// tried again, up to ClientOptions::max_attempts attempts in all, after a back-off that starts
// at initial_backoff and doubles up to max_backoff, each wait scaled by a random factor in
// [0.8, 1.2]. A Generate stream is retried only while no chunk has arrived: once the server
// has produced tokens a new attempt would not continue the same sequence. No other code is
// retried. ClientOptions::deadline bounds the whole call, retries and waits included. Another
// attempt is made only if, after its wait, the time left is at least twice what the failed
// attempt took (and at least 20 ms): otherwise the call fails with the last attempt's error,
// not with a DEADLINE_EXCEEDED from an attempt that had no time to get an answer.
//
// Thread safety. A Client may be used by many threads at once (one channel, many calls). A
// GenerateStream is read by one thread at a time; its Cancel() may be called from any thread.
#ifndef JAMBA_CLIENT_CLIENT_H_
#define JAMBA_CLIENT_CLIENT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"
#include "jamba/v1/generate.grpc.pb.h"

namespace jamba::client {

struct ClientOptions {
  // Bounds each call, all its attempts and back-off waits together. InfiniteDuration: none.
  absl::Duration deadline = absl::InfiniteDuration();
  int max_attempts = 4;  // >= 1; 1 disables retries
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  bool tls = false;
  // PEM root certificates that verify the server (tls only). Empty: the system's roots.
  std::string tls_root_certs_pem;
};

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown, kServing, kNotServing, kServiceUnknown };
// "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" (the proto's names).
const char* ServingStatusName(ServingStatus status);

// One Generate call: the chunks of one completion, read in order. Made by Client::Generate;
// the call starts on the first Next(). Destroying a stream that has not ended cancels it.
class GenerateStream {
 public:
  GenerateStream(const GenerateStream&) = delete;
  GenerateStream& operator=(const GenerateStream&) = delete;
  ~GenerateStream();

  // The next chunk; nullopt once the server has ended the stream successfully (the chunk
  // before carries the finish reason and usage). After an error or the end, every further
  // call returns the same result again.
  absl::StatusOr<std::optional<v1::GenerateChunk>> Next();

  // Stops the call: the server sees its context cancelled, a Next() in progress or to come
  // returns CANCELLED (unless the stream had already ended), and a back-off wait is cut
  // short. Safe from any thread, at any time, any number of times.
  void Cancel();

 private:
  friend class Client;
  GenerateStream(std::shared_ptr<v1::Jamba::Stub> stub, v1::GenerateRequest request,
                 const ClientOptions& options);
  // Starts a new attempt (a fresh context and reader); false if the stream was cancelled.
  bool StartAttempt() ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels and drains a live attempt so its resources can be released.
  void AbandonAttempt();
  // Ends the stream with `status`: Next()'s result from now on (nullopt if OK).
  absl::StatusOr<std::optional<v1::GenerateChunk>> Finish(absl::Status status);

  const std::shared_ptr<v1::Jamba::Stub> stub_;
  const v1::GenerateRequest request_;
  const ClientOptions options_;
  absl::Time deadline_ = absl::InfiniteFuture();  // set by the first Next()

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // The current attempt's context; replaced only by Next() while holding mu_, so Cancel()
  // can reach it safely.
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);

  // Touched by the reading thread only.
  std::unique_ptr<grpc::ClientReader<v1::GenerateChunk>> reader_;
  int attempts_ = 0;
  absl::Time attempt_start_;     // when the current (or last) attempt started
  absl::Duration next_backoff_;  // before jitter
  bool received_chunk_ = false;
  bool done_ = false;
  absl::Status final_status_;  // once done_: the result Next() keeps returning
};

class Client {
 public:
  // Makes a channel to `target` (HOST:PORT or any gRPC target URI). Does not wait for the
  // server: the first call connects. INVALID_ARGUMENT for an empty target or bad options.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         const ClientOptions& options = {});

  // Streams a completion. The stream may outlive this Client.
  std::unique_ptr<GenerateStream> Generate(const v1::GenerateRequest& request);
  // The same completion in one response, once the sequence has finished.
  absl::StatusOr<v1::GenerateResponse> GenerateUnary(const v1::GenerateRequest& request);
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request);
  absl::StatusOr<v1::DetokenizeResponse> Detokenize(const v1::DetokenizeRequest& request);
  absl::StatusOr<v1::ModelInfoResponse> ModelInfo();
  // grpc.health.v1.Health/Check of the whole server (service ""). An error only when the
  // check itself failed (e.g. UNAVAILABLE); a server that answers NOT_SERVING is a value.
  absl::StatusOr<ServingStatus> Health();

  const ClientOptions& options() const { return options_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::shared_ptr<v1::Jamba::Stub> stub_;
};

}  // namespace jamba::client

#endif  // JAMBA_CLIENT_CLIENT_H_
