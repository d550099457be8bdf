// The client SDK against a scripted jamba.v1.Jamba server on 127.0.0.1: streaming, the retry
// policy (UNAVAILABLE before the first chunk only), cancellation, deadlines, unary calls and
// the health check.
#include "client/client.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "rpc/server.h"
#include "tests/client/fake_jamba_service.h"

namespace jamba::client {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Retries fast enough for tests; deadlines are set where a test needs one.
ClientOptions FastRetries() {
  ClientOptions o;
  o.max_attempts = 4;
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(10);
  return o;
}

// A port nothing listens on: a server's, once it has shut down.
int ClosedPort() {
  auto server = StartServer("127.0.0.1:0", {});
  if (!server.ok()) return 0;
  const int port = server->port;
  server->server->Shutdown();
  return port;
}

absl::StatusOr<std::vector<v1::GenerateChunk>> ReadAll(GenerateStream* stream) {
  std::vector<v1::GenerateChunk> chunks;
  for (;;) {
    absl::StatusOr<std::optional<v1::GenerateChunk>> chunk = stream->Next();
    if (!chunk.ok()) return chunk.status();
    if (!chunk->has_value()) return chunks;
    chunks.push_back(**chunk);
  }
}

v1::GenerateRequest TextRequest(const std::string& text) {
  v1::GenerateRequest request;
  request.set_text(text);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_new_tokens(3);
  request.set_request_id("req-1");
  return request;
}

std::vector<v1::GenerateChunk> ThreeChunks() {
  return {Chunk({11, 12}, "He"), Chunk({13}, "llo"),
          FinalChunk({}, "", v1::FINISH_REASON_LENGTH, 5, 3)};
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto running = StartServer("127.0.0.1:0", {&fake_});
    ASSERT_TRUE(running.ok()) << running.status();
    server_ = *std::move(running);
    target_ = absl::StrCat("127.0.0.1:", server_.port);
  }
  void TearDown() override {
    // A deadline, so calls the fake still holds are cancelled rather than waited for.
    if (server_.server) server_.server->Shutdown(std::chrono::system_clock::now());
  }

  std::unique_ptr<Client> MakeClient(const ClientOptions& options = FastRetries()) {
    auto client = Client::Connect(target_, options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  FakeJambaService fake_;
  RunningServer server_;
  std::string target_;
};

TEST_F(ClientTest, StreamDeliversChunksInOrderThenEnds) {
  FakeBehavior b;
  b.chunks = ThreeChunks();
  fake_.set_behavior(b);
  auto client = MakeClient();
  const v1::GenerateRequest request = TextRequest("Hi");
  std::unique_ptr<GenerateStream> stream = client->Generate(request);
  auto chunks = ReadAll(stream.get());
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  ASSERT_EQ(chunks->size(), b.chunks.size());
  for (size_t i = 0; i < b.chunks.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals((*chunks)[i], b.chunks[i]))
        << i << ": " << (*chunks)[i].DebugString();
  }
  EXPECT_TRUE(MessageDifferencer::Equals(fake_.last_generate_request(), request));
  // The end is sticky.
  auto again = stream->Next();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(fake_.calls("Generate"), 1);
}

TEST_F(ClientTest, StreamRetriesUnavailableBeforeTheFirstChunk) {
  FakeBehavior b;
  b.unavailable_calls = 2;
  b.chunks = ThreeChunks();
  fake_.set_behavior(b);
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunks = ReadAll(stream.get());
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  EXPECT_EQ(chunks->size(), 3u);
  EXPECT_EQ(fake_.calls("Generate"), 3);
}

TEST_F(ClientTest, StreamGivesUpAfterMaxAttempts) {
  FakeBehavior b;
  b.unavailable_calls = 1000;
  fake_.set_behavior(b);
  ClientOptions o = FastRetries();
  o.max_attempts = 3;
  auto client = MakeClient(o);
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(chunk.status().message()),
              StartsWith("Generate: fake: unavailable (call 3)"));
  EXPECT_THAT(std::string(chunk.status().message()), HasSubstr("(after 3 attempts)"));
  EXPECT_EQ(fake_.calls("Generate"), 3);
  // The error is sticky and starts no new attempts.
  EXPECT_EQ(stream->Next().status(), chunk.status());
  EXPECT_EQ(fake_.calls("Generate"), 3);
}

TEST_F(ClientTest, StreamIsNotRetriedAfterAChunkArrived) {
  FakeBehavior b;
  b.chunks = {Chunk({11}, "He")};
  b.status_after_chunks = grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker lost");
  fake_.set_behavior(b);
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto first = stream->Next();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->text(), "He");
  auto second = stream->Next();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(second.status().message(), "Generate: worker lost");
  EXPECT_EQ(fake_.calls("Generate"), 1);
}

TEST_F(ClientTest, StreamIsNotRetriedOnInvalidArgument) {
  FakeBehavior b;
  b.error = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p must be in (0, 1]");
  fake_.set_behavior(b);
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(chunk.status().message(), "Generate: sampling.top_p must be in (0, 1]");
  EXPECT_EQ(fake_.calls("Generate"), 1);
}

TEST_F(ClientTest, CancelFromAnotherThreadReachesTheServer) {
  FakeBehavior b;
  b.chunks = {Chunk({11}, "He")};
  b.hang_after_chunks = true;
  fake_.set_behavior(b);
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto first = stream->Next();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  // The server holds the call open: this Next() blocks until the other thread cancels. (The
  // pause only makes it likely that Cancel() lands while Next() waits; either order must end
  // the same way.)
  std::thread canceller([&stream] {
    absl::SleepFor(absl::Milliseconds(50));
    stream->Cancel();
  });
  auto second = stream->Next();
  canceller.join();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(second.status().message()), StartsWith("Generate: "));
  EXPECT_TRUE(fake_.WaitForCancelledCalls(1, absl::Seconds(10)));
  EXPECT_EQ(fake_.calls("Generate"), 1);
}

TEST_F(ClientTest, CancelCutsTheBackoffShort) {
  FakeBehavior b;
  b.unavailable_calls = 1000;
  fake_.set_behavior(b);
  ClientOptions o;
  o.initial_backoff = absl::Seconds(60);
  o.max_backoff = absl::Seconds(60);
  auto client = MakeClient(o);
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  std::thread canceller([&] {
    fake_.WaitForCalls("Generate", 1, absl::Seconds(10));
    stream->Cancel();
  });
  const absl::Time start = absl::Now();
  auto chunk = stream->Next();
  canceller.join();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(fake_.calls("Generate"), 1);
}

TEST_F(ClientTest, CancelBeforeTheFirstNextSendsNothing) {
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  stream->Cancel();
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(fake_.calls("Generate"), 0);
}

TEST_F(ClientTest, DestroyingAnUnfinishedStreamCancelsTheCall) {
  FakeBehavior b;
  b.chunks = {Chunk({11}, "He")};
  b.hang_after_chunks = true;
  fake_.set_behavior(b);
  auto client = MakeClient();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  ASSERT_TRUE(stream->Next().ok());
  stream.reset();
  EXPECT_TRUE(fake_.WaitForCancelledCalls(1, absl::Seconds(10)));
}

TEST_F(ClientTest, DeadlineExceeded) {
  FakeBehavior b;
  b.hang_after_chunks = true;
  fake_.set_behavior(b);
  ClientOptions o = FastRetries();
  o.deadline = absl::Milliseconds(200);
  auto client = MakeClient(o);

  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(chunk.status().message()), StartsWith("Generate: "));

  auto unary = client->GenerateUnary(TextRequest("Hi"));
  ASSERT_FALSE(unary.ok());
  EXPECT_EQ(unary.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(unary.status().message()), StartsWith("GenerateUnary: "));
  // The server saw both calls end.
  EXPECT_TRUE(fake_.WaitForCancelledCalls(2, absl::Seconds(10)));
}

TEST_F(ClientTest, DeadlineBoundsAllAttempts) {
  FakeBehavior b;
  b.unavailable_calls = 1000000;
  fake_.set_behavior(b);
  ClientOptions o;
  o.max_attempts = 1000;
  o.initial_backoff = absl::Milliseconds(50);
  o.max_backoff = absl::Milliseconds(50);
  o.deadline = absl::Milliseconds(400);
  auto client = MakeClient(o);
  const absl::Time start = absl::Now();
  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  const absl::Duration elapsed = absl::Now() - start;
  ASSERT_FALSE(chunk.ok());
  // Attempts are started with 20 ms or more left, so the last one should end UNAVAILABLE; on
  // a loaded machine it may still run into the deadline.
  EXPECT_THAT(chunk.status().code(),
              AnyOf(absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded))
      << chunk.status();
  // ~400 ms / ~50 ms waits: a handful of attempts, none started after the deadline.
  EXPECT_GE(fake_.calls("Generate"), 2);
  EXPECT_LE(fake_.calls("Generate"), 10);
  EXPECT_LT(elapsed, absl::Seconds(2));

  const int before = fake_.calls("Tokenize");
  auto tokens = client->Tokenize(v1::TokenizeRequest());
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().code(),
              AnyOf(absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded))
      << tokens.status();
  EXPECT_GE(fake_.calls("Tokenize") - before, 2);
  EXPECT_LE(fake_.calls("Tokenize") - before, 10);
}

// A server that takes 100 ms to say UNAVAILABLE, and a 380 ms deadline: after the first
// attempt ~280 ms are left, enough for another; after the second (ending at >= 200 ms) at most
// ~180 ms, less than twice the 100 ms an attempt takes. So the call fails with the server's
// UNAVAILABLE after two attempts, not with a DEADLINE_EXCEEDED from a fourth attempt that
// starts with ~75 ms left, as a rule that retries while any time is left does.
TEST_F(ClientTest, NoAttemptIsStartedWithoutTimeForAnAnswer) {
  FakeBehavior b;
  b.unavailable_calls = 1000000;
  b.unavailable_after = absl::Milliseconds(100);
  fake_.set_behavior(b);
  ClientOptions o;
  o.max_attempts = 1000;
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(1);
  o.deadline = absl::Milliseconds(380);
  auto client = MakeClient(o);

  std::unique_ptr<GenerateStream> stream = client->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kUnavailable) << chunk.status();
  EXPECT_THAT(std::string(chunk.status().message()), HasSubstr("(after 2 attempts)"));
  EXPECT_EQ(fake_.calls("Generate"), 2);

  auto tokens = client->Tokenize(v1::TokenizeRequest());
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kUnavailable) << tokens.status();
  EXPECT_THAT(std::string(tokens.status().message()), HasSubstr("(after 2 attempts)"));
  EXPECT_EQ(fake_.calls("Tokenize"), 2);
}

TEST_F(ClientTest, ClosedPortFailsUnavailableAfterEveryAttempt) {
  const int port = ClosedPort();
  ASSERT_NE(port, 0);
  ClientOptions o;
  o.max_attempts = 3;
  o.initial_backoff = absl::Milliseconds(40);
  o.max_backoff = absl::Milliseconds(80);
  auto client = Client::Connect(absl::StrCat("127.0.0.1:", port), o);
  ASSERT_TRUE(client.ok()) << client.status();

  absl::Time start = absl::Now();
  auto info = (*client)->ModelInfo();
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(info.status().message()), StartsWith("ModelInfo: "));
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("(after 3 attempts)"));
  // Two waits of nominally 40 and 80 ms, each at least 0.8 of that.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(96));

  start = absl::Now();
  std::unique_ptr<GenerateStream> stream = (*client)->Generate(TextRequest("Hi"));
  auto chunk = stream->Next();
  ASSERT_FALSE(chunk.ok());
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(chunk.status().message()), HasSubstr("(after 3 attempts)"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(96));

  auto health = (*client)->Health();
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.status().message()), StartsWith("Health: "));
}

TEST_F(ClientTest, UnaryCallsRoundTrip) {
  FakeBehavior b;
  b.chunks = ThreeChunks();
  b.model_info.set_architecture("jamba");
  b.model_info.set_vocab_size(65536);
  b.model_info.set_context_limit(262144);
  b.model_info.add_layers()->set_mixer("mamba");
  fake_.set_behavior(b);
  auto client = MakeClient();

  v1::TokenizeRequest tokenize;
  tokenize.set_text("abc");
  auto tokens = client->Tokenize(tokenize);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(tokens->token_ids(), ::testing::ElementsAre(97, 98, 99));

  v1::DetokenizeRequest detokenize;
  detokenize.add_token_ids(104);
  detokenize.add_token_ids(105);
  auto text = client->Detokenize(detokenize);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->text(), "hi");

  auto info = client->ModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*info, b.model_info));

  auto response = client->GenerateUnary(TextRequest("Hi"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->token_ids(), ::testing::ElementsAre(11, 12, 13));
  EXPECT_EQ(response->text(), "Hello");
  EXPECT_EQ(response->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(response->usage().completion_tokens(), 3);
}

TEST_F(ClientTest, UnaryCallsRetryUnavailableOnly) {
  FakeBehavior b;
  b.unavailable_calls = 2;
  fake_.set_behavior(b);
  auto client = MakeClient();
  v1::TokenizeRequest request;
  request.set_text("a");
  auto tokens = client->Tokenize(request);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(fake_.calls("Tokenize"), 3);

  b.unavailable_calls = 0;
  b.error = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full");
  fake_.set_behavior(b);
  auto failed = client->Detokenize(v1::DetokenizeRequest());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(failed.status().message(), "Detokenize: queue full");
  EXPECT_EQ(fake_.calls("Detokenize"), 1);
}

TEST_F(ClientTest, HealthReportsServingAndNotServing) {
  auto client = MakeClient();
  auto health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);
  server_.server->GetHealthCheckService()->SetServingStatus(false);
  health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kNotServing);
  EXPECT_STREQ(ServingStatusName(*health), "NOT_SERVING");
}

TEST_F(ClientTest, ReceivesResponsesAboveGrpcsDefaultLimit) {
  FakeBehavior b;
  b.model_info.set_fingerprint(std::string(5 << 20, 'f'));  // gRPC's default limit is 4 MiB
  fake_.set_behavior(b);
  auto client = MakeClient();
  auto info = client->ModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->fingerprint().size(), size_t{5 << 20});
}

TEST(ClientConnectTest, RejectsAnEmptyTargetAndBadOptions) {
  auto empty = Client::Connect("", ClientOptions());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions o;
  o.max_attempts = 0;
  EXPECT_EQ(Client::Connect("127.0.0.1:1", o).status().code(), absl::StatusCode::kInvalidArgument);
  o = ClientOptions();
  o.initial_backoff = absl::Seconds(5);
  o.max_backoff = absl::Seconds(1);
  EXPECT_EQ(Client::Connect("127.0.0.1:1", o).status().code(), absl::StatusCode::kInvalidArgument);
  o = ClientOptions();
  o.deadline = absl::ZeroDuration();
  EXPECT_EQ(Client::Connect("127.0.0.1:1", o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Client::Connect("127.0.0.1:1", ClientOptions()).ok());
}

}  // namespace
}  // namespace jamba::client
