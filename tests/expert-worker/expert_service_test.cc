// A real ExpertWorker gRPC server on loopback against the engine's own expert computation.
#include "expert-worker/expert_service.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "expert-worker/expert_set.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/server.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

constexpr char kModel[] = "jamba_moe_gqa";

class ExpertServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = CreateCpuBackend();
    LoadOptions options;
    options.shard.experts_only = true;
    options.shard.want_expert = [](int64_t, int64_t e) { return e == 1 || e == 3; };
    auto model = Model::Load(ModelFixtureDir(kModel), options, backend.get());
    ASSERT_TRUE(model.ok()) << model.status();
    config_ = (*model)->config();
    service_ = std::make_unique<ExpertService>(std::move(backend), *std::move(model),
                                               /*merge_requests=*/true);
    auto server = StartServer("127.0.0.1:0", {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->server);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server->port),
                                             grpc::InsecureChannelCredentials(), args);
    stub_ = v1::ExpertWorker::NewStub(channel);
    moe_layer_ = 0;
    while (config_.layers[moe_layer_].ffn != FfnKind::kMoe) ++moe_layer_;
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // The expert computed in-process by a normally loaded (all experts) model.
  std::vector<float> Local(int64_t layer, int64_t expert, const std::vector<float>& x) {
    auto backend = CreateCpuBackend();
    auto model = Model::Load(ModelFixtureDir(kModel), LoadOptions{}, backend.get());
    EXPECT_TRUE(model.ok());
    const int64_t h = config_.hidden_size, n = static_cast<int64_t>(x.size()) / h;
    Workspace ws(backend.get());
    BatchLayout layout;
    ForwardContext ctx{backend.get(), &layout, &ws, &config_};
    Tensor xd = ws.Take(DType::kF32, {n, h}), yd = ws.Take(DType::kF32, {n, h});
    EXPECT_TRUE(backend->Upload(x.data(), x.size() * 4, xd).ok());
    (*model)->ExpertForward(ctx, layer, expert, xd, yd);
    std::vector<float> y(x.size());
    EXPECT_TRUE(backend->Download(yd, y.data()).ok());
    return y;
  }

  std::vector<float> Tokens(int64_t n, double phase) {
    std::vector<float> x(n * config_.hidden_size);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::cos(phase + 0.1 * i));
    return x;
  }

  void AddBatch(v1::ExpertRequest* req, int64_t layer, int64_t expert,
                const std::vector<float>& x) {
    v1::ExpertBatch* b = req->add_batches();
    b->set_layer(static_cast<int32_t>(layer));
    b->set_expert(static_cast<int32_t>(expert));
    const int64_t shape[] = {static_cast<int64_t>(x.size()) / config_.hidden_size,
                             config_.hidden_size};
    EncodeF32(x.data(), shape, b->mutable_tokens());
  }

  ModelConfig config_;
  std::unique_ptr<ExpertService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ExpertWorker::Stub> stub_;
  int64_t moe_layer_ = 0;
};

TEST_F(ExpertServiceTest, ComputesExactlyWhatTheEngineComputes) {
  const std::vector<float> a = Tokens(5, 0.0), b = Tokens(2, 1.0), empty;
  v1::ExpertRequest req;
  AddBatch(&req, moe_layer_, 1, a);
  AddBatch(&req, moe_layer_, 3, empty);
  AddBatch(&req, moe_layer_, 3, b);
  v1::ExpertResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = stub_->Compute(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.outputs_size(), 3);
  const std::vector<float> want_a = Local(moe_layer_, 1, a), want_b = Local(moe_layer_, 3, b);
  auto view_a = ViewF32(resp.outputs(0), 2, "out");
  auto view_e = ViewF32(resp.outputs(1), 2, "out");
  auto view_b = ViewF32(resp.outputs(2), 2, "out");
  ASSERT_TRUE(view_a.ok() && view_e.ok() && view_b.ok());
  EXPECT_EQ(view_e->numel, 0);
  ASSERT_EQ(view_a->numel, static_cast<int64_t>(want_a.size()));
  ASSERT_EQ(view_b->numel, static_cast<int64_t>(want_b.size()));
  // Batch-invariant kernels: bit-identical to the in-process result.
  EXPECT_EQ(std::memcmp(view_a->data, want_a.data(), want_a.size() * 4), 0);
  EXPECT_EQ(std::memcmp(view_b->data, want_b.data(), want_b.size() * 4), 0);
}

// Requests arriving while a round computes are merged into the next (each expert's rows of
// all of them in one product): every answer is still bit-identical to that request computed
// alone. The first round is held until every other request waits, so the second round
// merges them all (the first round may already hold more than one).
TEST_F(ExpertServiceTest, ConcurrentRequestsAreMergedWithoutChangingAnyRow) {
  constexpr int kThreads = 8;
  std::vector<std::vector<float>> xa, xb, want_a, want_b;
  for (int t = 0; t < kThreads; ++t) {
    xa.push_back(Tokens(1 + t % 3, 0.3 * t));
    xb.push_back(Tokens(2 + t % 2, 1.7 + 0.2 * t));
    want_a.push_back(Local(moe_layer_, 1, xa[t]));
    want_b.push_back(Local(moe_layer_, 3, xb[t]));
  }
  std::atomic<bool> first{true};
  service_->SetRoundHookForTesting([&](size_t round_size) {
    if (!first.exchange(false)) return;
    // Every request not in this first round waits for the next.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (service_->waiting() < kThreads - static_cast<int64_t>(round_size) &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  std::vector<std::thread> threads;
  std::vector<int> exact(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      v1::ExpertRequest req;
      AddBatch(&req, moe_layer_, 3, xb[t]);  // a different order of experts per request
      AddBatch(&req, moe_layer_, 1, xa[t]);
      v1::ExpertResponse resp;
      grpc::ClientContext ctx;
      if (!stub_->Compute(&ctx, req, &resp).ok() || resp.outputs_size() != 2) return;
      auto b = ViewF32(resp.outputs(0), 2, "out");
      auto a = ViewF32(resp.outputs(1), 2, "out");
      exact[t] = a.ok() && b.ok() && a->numel == static_cast<int64_t>(want_a[t].size()) &&
                 b->numel == static_cast<int64_t>(want_b[t].size()) &&
                 std::memcmp(a->data, want_a[t].data(), want_a[t].size() * 4) == 0 &&
                 std::memcmp(b->data, want_b[t].data(), want_b[t].size() * 4) == 0;
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(exact[t]) << "request " << t;
  const ExpertService::Stats stats = service_->GetStats();
  EXPECT_EQ(stats.requests, kThreads);
  EXPECT_EQ(stats.rounds, 2);  // the held first one, then all the others together
  EXPECT_GE(stats.merged_requests, kThreads - 1);
}

TEST_F(ExpertServiceTest, BadRequestsAreInvalidArgumentNamingTheField) {
  struct Case {
    v1::ExpertRequest req;
    std::string message;
  };
  std::vector<Case> cases(3);
  AddBatch(&cases[0].req, moe_layer_, 0, Tokens(1, 0));  // expert 0 is not held
  cases[0].message = "expert 0 of layer";
  AddBatch(&cases[1].req, moe_layer_, 1, Tokens(1, 0));
  cases[1].req.mutable_batches(0)->mutable_tokens()->set_shape(1, 7);
  cases[1].message = "batches[0].tokens: shape [1, 7] needs 28 bytes";
  AddBatch(&cases[2].req, moe_layer_, 1, Tokens(1, 0));
  const std::vector<float> narrow(7 * 2, 1.0f);  // 7 tokens of width 2, not hidden_size
  const int64_t narrow_shape[] = {7, 2};
  EncodeF32(narrow.data(), narrow_shape, cases[2].req.mutable_batches(0)->mutable_tokens());
  cases[2].message =
      absl::StrCat("batches[0].tokens: expected ", config_.hidden_size, " columns, got 2");
  for (const Case& c : cases) {
    v1::ExpertResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->Compute(&ctx, c.req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  // The server is unharmed: a good request still works.
  v1::ExpertRequest good;
  AddBatch(&good, moe_layer_, 3, Tokens(1, 0));
  v1::ExpertResponse resp;
  grpc::ClientContext ctx;
  EXPECT_TRUE(stub_->Compute(&ctx, good, &resp).ok());
}

TEST_F(ExpertServiceTest, ShardInfoReportsFingerprintAndExperts) {
  v1::ExpertShardInfoResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ShardInfo(&ctx, v1::ExpertShardInfoRequest(), &resp).ok());
  auto ckpt = Checkpoint::Open(ModelFixtureDir(kModel));
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(resp.fingerprint(), (*ckpt)->fingerprint());
  ASSERT_EQ(resp.layers_size(), config_.NumMoeLayers());
  for (const auto& l : resp.layers()) {
    EXPECT_EQ(config_.layers[l.layer()].ffn, FfnKind::kMoe);
    EXPECT_THAT(std::vector<int32_t>(l.experts().begin(), l.experts().end()),
                ::testing::ElementsAre(1, 3));
  }
}

TEST(ExpertSetTest, ParsesAllAndLists) {
  auto all = ParseExpertSet("all");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Contains(7, 9));
  auto some = ParseExpertSet("1:0,2; 3:5");
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_TRUE(some->Contains(1, 2) && some->Contains(3, 5));
  EXPECT_FALSE(some->Contains(1, 1) || some->Contains(3, 0));
  for (const char* bad : {"", "1", "1:", "x:1", "1:a", "1:-2", "-1:0"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseExpertSet(bad).status())) << bad;
  }
}

}  // namespace
}  // namespace jamba
