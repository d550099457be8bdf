#include "client/client.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "rpc/grpc_status.h"
#include "rpc/server.h"

namespace jamba::client {
namespace {

absl::Time CallDeadline(const ClientOptions& options) {
  if (options.deadline == absl::InfiniteDuration()) return absl::InfiniteFuture();
  return absl::Now() + options.deadline;
}

void SetDeadline(grpc::ClientContext* context, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
}

// The wait before the next attempt: `*nominal` scaled by a random factor in [0.8, 1.2] (so
// clients that failed together do not come back together); `*nominal` then doubles, capped
// at max_backoff.
absl::Duration NextBackoff(const ClientOptions& options, absl::Duration* nominal) {
  absl::BitGen gen;
  const absl::Duration delay = *nominal * absl::Uniform(gen, 0.8, 1.2);
  *nominal = std::min(*nominal * 2, options.max_backoff);
  return delay;
}

// The least time left before the deadline that another attempt is started with. An attempt
// that cannot get an answer in time only turns the real error (UNAVAILABLE) into
// DEADLINE_EXCEEDED.
constexpr absl::Duration kMinAttemptTime = absl::Milliseconds(20);

// The wait before another attempt after the `attempts`-th, which took `last_attempt`, failed
// with `status`; or nullopt when there must be none: not UNAVAILABLE, no attempts left, or
// after the wait less time would be left than twice what the failed attempt took (at least
// kMinAttemptTime).
std::optional<absl::Duration> RetryDelay(const grpc::Status& status, int attempts,
                                         absl::Duration last_attempt, const ClientOptions& options,
                                         absl::Time deadline, absl::Duration* nominal_backoff) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return std::nullopt;
  if (attempts >= options.max_attempts) return std::nullopt;
  const absl::Duration delay = NextBackoff(options, nominal_backoff);
  const absl::Duration needed = std::max(2 * last_attempt, kMinAttemptTime);
  if (absl::Now() + delay + needed > deadline) return std::nullopt;
  return delay;
}

// The error of a failed call, as the header describes it.
absl::Status CallError(absl::string_view method, const grpc::Status& status, int attempts) {
  const absl::Status s = FromGrpcStatus(status);
  std::string message = absl::StrCat(method, ": ", s.message());
  if (attempts > 1) absl::StrAppend(&message, " (after ", attempts, " attempts)");
  return absl::Status(s.code(), message);
}

// One unary call with the retry policy of the header. `call` performs one attempt.
template <typename Response>
absl::StatusOr<Response> CallUnary(
    absl::string_view method, const ClientOptions& options,
    absl::FunctionRef<grpc::Status(grpc::ClientContext*, Response*)> call) {
  const absl::Time deadline = CallDeadline(options);
  absl::Duration backoff = options.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    SetDeadline(&context, deadline);
    Response response;
    const absl::Time start = absl::Now();
    const grpc::Status status = call(&context, &response);
    if (status.ok()) return response;
    const std::optional<absl::Duration> delay =
        RetryDelay(status, attempt, absl::Now() - start, options, deadline, &backoff);
    if (!delay.has_value()) return CallError(method, status, attempt);
    absl::SleepFor(*delay);
  }
}

absl::Status ValidateOptions(const ClientOptions& o) {
  if (o.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.max_attempts must be >= 1, got ", o.max_attempts));
  }
  if (o.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.deadline must be positive");
  }
  if (o.initial_backoff < absl::ZeroDuration() || o.max_backoff < o.initial_backoff ||
      o.max_backoff == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "ClientOptions: need 0 <= initial_backoff <= max_backoff < infinity");
  }
  if (!o.tls && !o.tls_root_certs_pem.empty()) {
    return absl::InvalidArgumentError("ClientOptions.tls_root_certs_pem needs tls = true");
  }
  return absl::OkStatus();
}

}  // namespace

const char* ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

// ---- GenerateStream -----------------------------------------------------------------------

GenerateStream::GenerateStream(std::shared_ptr<v1::Jamba::Stub> stub, v1::GenerateRequest request,
                               const ClientOptions& options)
    : stub_(std::move(stub)),
      request_(std::move(request)),
      options_(options),
      next_backoff_(options.initial_backoff) {}

GenerateStream::~GenerateStream() { AbandonAttempt(); }

void GenerateStream::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool GenerateStream::StartAttempt() {
  auto context = std::make_unique<grpc::ClientContext>();
  SetDeadline(context.get(), deadline_);
  grpc::ClientContext* raw = context.get();
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return false;
    context_ = std::move(context);  // the previous attempt's reader is already finished
  }
  ++attempts_;
  attempt_start_ = absl::Now();
  // Outside mu_: starting a call may wait for a connection, and Cancel() must not wait for
  // that. A TryCancel() that comes before the call exists is applied when it is created.
  reader_ = stub_->Generate(raw, request_);
  return true;
}

void GenerateStream::AbandonAttempt() {
  if (reader_ == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    context_->TryCancel();
  }
  v1::GenerateChunk ignored;
  while (reader_->Read(&ignored)) {
  }
  reader_->Finish().IgnoreError();
  reader_.reset();
}

absl::StatusOr<std::optional<v1::GenerateChunk>> GenerateStream::Finish(absl::Status status) {
  done_ = true;
  final_status_ = std::move(status);
  if (!final_status_.ok()) return final_status_;
  return std::nullopt;
}

absl::StatusOr<std::optional<v1::GenerateChunk>> GenerateStream::Next() {
  if (done_) {
    if (!final_status_.ok()) return final_status_;
    return std::nullopt;
  }
  if (attempts_ == 0 && reader_ == nullptr) deadline_ = CallDeadline(options_);
  for (;;) {
    if (reader_ == nullptr && !StartAttempt()) {
      return Finish(absl::CancelledError("Generate: cancelled by the client"));
    }
    v1::GenerateChunk chunk;
    if (reader_->Read(&chunk)) {
      received_chunk_ = true;
      return chunk;
    }
    const grpc::Status status = reader_->Finish();
    reader_.reset();
    if (status.ok()) return Finish(absl::OkStatus());
    // Once a chunk has arrived the server has generated tokens: another attempt would start
    // a new sequence, not continue this one.
    const std::optional<absl::Duration> delay =
        received_chunk_ ? std::nullopt
                        : RetryDelay(status, attempts_, absl::Now() - attempt_start_, options_,
                                     deadline_, &next_backoff_);
    if (!delay.has_value()) return Finish(CallError("Generate", status, attempts_));
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_), *delay);
    if (cancelled_) return Finish(absl::CancelledError("Generate: cancelled by the client"));
  }
}

// ---- Client -------------------------------------------------------------------------------

Client::Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : options_(options), channel_(std::move(channel)), stub_(v1::Jamba::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        const ClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("Connect: the target is empty");
  JAMBA_RETURN_IF_ERROR(ValidateOptions(options));
  grpc::ChannelArguments args;
  // Responses with many logprobs, or ModelInfo of a large cluster, may exceed gRPC's 4 MiB.
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // gRPC waits up to 120 s between reconnections by default, and a call made meanwhile fails
  // at once, so our retries would never find a restarted server. Keep the channel's
  // reconnection pace to ours. (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is also the
  // connection timeout.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.initial_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_backoff)));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs_pem;
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("Connect: cannot make a channel to ", target));
  }
  return std::unique_ptr<Client>(new Client(std::move(channel), options));
}

std::unique_ptr<GenerateStream> Client::Generate(const v1::GenerateRequest& request) {
  return std::unique_ptr<GenerateStream>(new GenerateStream(stub_, request, options_));
}

absl::StatusOr<v1::GenerateResponse> Client::GenerateUnary(const v1::GenerateRequest& request) {
  return CallUnary<v1::GenerateResponse>("GenerateUnary", options_,
                                         [&](grpc::ClientContext* c, v1::GenerateResponse* r) {
                                           return stub_->GenerateUnary(c, request, r);
                                         });
}

absl::StatusOr<v1::TokenizeResponse> Client::Tokenize(const v1::TokenizeRequest& request) {
  return CallUnary<v1::TokenizeResponse>("Tokenize", options_,
                                         [&](grpc::ClientContext* c, v1::TokenizeResponse* r) {
                                           return stub_->Tokenize(c, request, r);
                                         });
}

absl::StatusOr<v1::DetokenizeResponse> Client::Detokenize(const v1::DetokenizeRequest& request) {
  return CallUnary<v1::DetokenizeResponse>("Detokenize", options_,
                                           [&](grpc::ClientContext* c, v1::DetokenizeResponse* r) {
                                             return stub_->Detokenize(c, request, r);
                                           });
}

absl::StatusOr<v1::ModelInfoResponse> Client::ModelInfo() {
  const v1::ModelInfoRequest request;
  return CallUnary<v1::ModelInfoResponse>("ModelInfo", options_,
                                          [&](grpc::ClientContext* c, v1::ModelInfoResponse* r) {
                                            return stub_->ModelInfo(c, request, r);
                                          });
}

absl::StatusOr<ServingStatus> Client::Health() {
  using grpc::health::v1::HealthCheckResponse;
  const std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(channel_);
  const grpc::health::v1::HealthCheckRequest request;  // service "": the whole server
  JAMBA_ASSIGN_OR_RETURN(
      const HealthCheckResponse response,
      CallUnary<HealthCheckResponse>("Health", options_,
                                     [&](grpc::ClientContext* c, HealthCheckResponse* r) {
                                       return stub->Check(c, request, r);
                                     }));
  switch (response.status()) {
    case HealthCheckResponse::SERVING:
      return ServingStatus::kServing;
    case HealthCheckResponse::NOT_SERVING:
      return ServingStatus::kNotServing;
    case HealthCheckResponse::SERVICE_UNKNOWN:
      return ServingStatus::kServiceUnknown;
    default:
      return ServingStatus::kUnknown;
  }
}

}  // namespace jamba::client
