// RemoteExperts against real ExpertWorker servers on loopback: load spreading over replicas,
// failover when a replica goes away, and the checks made at connection (checkpoint
// fingerprint, every expert reachable).
#include "layer-worker/remote_experts.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "layer-worker/layer_service.h"
#include "tests/engine/runtime/reference_fixture.h"
#include "tests/gateway/in_process_cluster.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

constexpr char kModel[] = "jamba_moe_gqa";

class RemoteExpertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto checkpoint = Checkpoint::Open(ModelFixtureDir(kModel));
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    config_ = (*checkpoint)->config();
    fingerprint_ = (*checkpoint)->fingerprint();
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      if (config_.layers[l].ffn == FfnKind::kMoe) moe_layers_.push_back(l);
    }
    ASSERT_FALSE(moe_layers_.empty());
    ASSERT_GE(config_.num_experts, 4);
  }
  void TearDown() override {
    for (auto& s : servers_) Stop(s.get());
  }

  ExpertServer* Start(const std::string& model, const std::string& spec) {
    auto s = StartExpertServer(ModelFixtureDir(model), spec);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    servers_.push_back(*std::move(s));
    return servers_.back().get();
  }
  static void Stop(ExpertServer* s) {
    if (s->server == nullptr) return;
    s->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    s->server.reset();  // closes the port
  }

  RemoteExpertsOptions Options() const {
    RemoteExpertsOptions o;
    o.connect_timeout = absl::Seconds(20);
    o.call_timeout = absl::Seconds(20);
    o.down_time = absl::Seconds(2);
    return o;
  }

  // Inputs for experts 0..3 of one layer step: [rows_e, hidden] f32 each.
  std::vector<std::vector<float>> Inputs() const {
    const int64_t rows[] = {3, 1, 4, 2};
    std::vector<std::vector<float>> x;
    for (int e = 0; e < 4; ++e) {
      std::vector<float> v(rows[e] * config_.hidden_size);
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(std::sin(0.37 * i + e));
      x.push_back(std::move(v));
    }
    return x;
  }

  // Runs experts 0..3 of `layer` on the inputs through `remote`; the outputs, or empty.
  std::vector<std::vector<float>> Compute(RemoteExperts* remote, int64_t layer,
                                          const std::vector<std::vector<float>>& x,
                                          absl::Status* status) {
    std::vector<std::vector<float>> y(x.size());
    std::vector<ExpertWork> work;
    for (size_t e = 0; e < x.size(); ++e) {
      y[e].assign(x[e].size(), std::nanf(""));
      work.push_back(ExpertWork{static_cast<int32_t>(e),
                                static_cast<int64_t>(x[e].size()) / config_.hidden_size,
                                x[e].data(), y[e].data()});
    }
    *status = remote->Compute(layer, work);
    return y;
  }

  // The expert computed in this process by a normally loaded model.
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

  ModelConfig config_;
  std::string fingerprint_;
  std::vector<int64_t> moe_layers_;
  std::vector<std::unique_ptr<ExpertServer>> servers_;
};

bool SameFloats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_F(RemoteExpertsTest, ReplicasShareTheLoadAndFailOverWithIdenticalOutputs) {
  ExpertServer* a = Start(kModel, "all");
  ExpertServer* b = Start(kModel, "all");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto remote = RemoteExperts::Connect({a->address, b->address}, fingerprint_, config_.hidden_size,
                                       Options());
  ASSERT_TRUE(remote.ok()) << remote.status();
  const int64_t layer = moe_layers_[0];
  for (int64_t e = 0; e < config_.num_experts; ++e) EXPECT_TRUE((*remote)->Holds(layer, e));

  const std::vector<std::vector<float>> x = Inputs();
  std::vector<std::vector<float>> first;
  for (int call = 0; call < 4; ++call) {
    absl::Status s;
    std::vector<std::vector<float>> y = Compute(remote->get(), layer, x, &s);
    ASSERT_TRUE(s.ok()) << s;
    if (call == 0) {
      first = y;
    } else {
      for (size_t e = 0; e < y.size(); ++e) EXPECT_TRUE(SameFloats(y[e], first[e]));
    }
  }
  // The same floats the engine computes in-process.
  for (size_t e = 0; e < x.size(); ++e) {
    EXPECT_TRUE(SameFloats(first[e], Local(layer, static_cast<int64_t>(e), x[e])))
        << "expert " << e;
  }
  std::vector<ExpertWorkerStats> stats = (*remote)->Stats();
  ASSERT_EQ(stats.size(), 2u);
  int64_t rows = 0;
  for (const ExpertWorkerStats& w : stats) {
    EXPECT_GT(w.requests, 0) << w.address;
    EXPECT_GT(w.rows, 0) << w.address;
    EXPECT_EQ(w.failures, 0) << w.address;
    rows += w.rows;
  }
  EXPECT_EQ(rows, 4 * (3 + 1 + 4 + 2));  // every row sent exactly once

  // One replica goes away: the next steps are answered by the other, unchanged.
  Stop(a);
  for (int call = 0; call < 3; ++call) {
    absl::Status s;
    std::vector<std::vector<float>> y = Compute(remote->get(), layer, x, &s);
    ASSERT_TRUE(s.ok()) << s;
    for (size_t e = 0; e < y.size(); ++e) EXPECT_TRUE(SameFloats(y[e], first[e]));
  }
  stats = (*remote)->Stats();
  EXPECT_GE(stats[0].failures, 1);  // it was tried (the step's share retried on b)
  EXPECT_EQ(stats[1].failures, 0);

  // With no replica left the step fails, as Unavailable naming the expert.
  Stop(b);
  absl::Status s;
  Compute(remote->get(), layer, x, &s);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("expert"));
}

TEST_F(RemoteExpertsTest, WorkerOfAnotherCheckpointIsRefused) {
  ExpertServer* same = Start(kModel, "all");
  ExpertServer* other = Start("jamba_auto_dtrank", "all");
  ASSERT_TRUE(same != nullptr && other != nullptr);
  auto remote = RemoteExperts::Connect({same->address, other->address}, fingerprint_,
                                       config_.hidden_size, Options());
  ASSERT_FALSE(remote.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(remote.status())) << remote.status();
  EXPECT_THAT(remote.status().message(), HasSubstr(other->address));
}

TEST_F(RemoteExpertsTest, ServerThatIsNoExpertWorkerIsRefused) {
  LayerWorkerConfig config;
  config.model_dir = ModelFixtureDir(kModel);
  auto layer = StartLayerServer(config);
  ASSERT_TRUE(layer.ok()) << layer.status();
  auto remote =
      RemoteExperts::Connect({(*layer)->address}, fingerprint_, config_.hidden_size, Options());
  ASSERT_FALSE(remote.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(remote.status())) << remote.status();
  EXPECT_THAT(remote.status().message(), HasSubstr((*layer)->address));
}

TEST_F(RemoteExpertsTest, LayerServiceRefusesWhenAnExpertHasNoWorker) {
  // Experts 0..2 of every MoE layer on two workers; expert 3 nowhere.
  std::string spec;
  for (int64_t l : moe_layers_) absl::StrAppend(&spec, spec.empty() ? "" : ";", l, ":0,1,2");
  ExpertServer* a = Start(kModel, spec);
  ExpertServer* b = Start(kModel, spec);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  LayerWorkerConfig config;
  config.model_dir = ModelFixtureDir(kModel);
  config.expert_workers = {a->address, b->address};
  config.remote = Options();
  auto service = LayerService::Create(config, CreateCpuBackend());
  ASSERT_FALSE(service.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(service.status())) << service.status();
  EXPECT_THAT(service.status().message(),
              HasSubstr(absl::StrCat("expert 3 of MoE layer ", moe_layers_[0])));

  // A worker holding expert 3 completes the same configuration.
  std::string spec3;
  for (int64_t l : moe_layers_) absl::StrAppend(&spec3, spec3.empty() ? "" : ";", l, ":3");
  ExpertServer* c = Start(kModel, spec3);
  ASSERT_NE(c, nullptr);
  config.expert_workers.push_back(c->address);
  auto fixed = LayerService::Create(config, CreateCpuBackend());
  EXPECT_TRUE(fixed.ok()) << fixed.status();
}

}  // namespace
}  // namespace jamba
