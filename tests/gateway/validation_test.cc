// The public API's validation through real gRPC calls to an in-process cluster of the demo
// model (which has a tokenizer): every bad request is INVALID_ARGUMENT naming its field, and
// does not disturb a valid request streaming at the same time. Also Tokenize / Detokenize,
// ModelInfo, and the gateway refusing a cluster that does not fit together.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/checkpoint/checkpoint.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/generator.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "rpc/channel.h"
#include "tests/engine/runtime/reference_fixture.h"
#include "tests/gateway/cluster_test_util.h"
#include "tests/gateway/in_process_cluster.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string& DemoDir() {
  static const std::string* dir =
      new std::string(std::string(JAMBA_SOURCE_DIR) + "/models/jamba-demo");
  return *dir;
}

constexpr int64_t kContext = 256;  // the layer workers' context limit in this cluster

class ValidationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto checkpoint = Checkpoint::Open(DemoDir());
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    ClusterOptions options;
    options.model_dir = DemoDir();
    options.layer_workers = 2;
    options.expert_specs = DefaultExpertSpecs((*checkpoint)->config(), 4);
    options.stage.max_context = kContext;
    auto cluster = InProcessCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  static InProcessCluster* cluster_;
};

InProcessCluster* ValidationTest::cluster_ = nullptr;

struct BadRequest {
  std::string name;
  v1::GenerateRequest request;
  std::string field;  // the error message must contain it
};

std::vector<BadRequest> BadRequests(int64_t vocab) {
  std::vector<BadRequest> cases;
  auto valid = [] {
    v1::GenerateRequest r = IdsRequest({1, 1239, 325}, TestSampling(4));
    return r;
  };
  auto add = [&](std::string name, std::string field, auto edit) {
    BadRequest b{std::move(name), valid(), std::move(field)};
    edit(&b.request);
    cases.push_back(std::move(b));
  };
  add("no prompt", "prompt", [](v1::GenerateRequest* r) { r->clear_prompt(); });
  add("empty text", "prompt.text", [](v1::GenerateRequest* r) { r->set_text(""); });
  add("empty token_ids", "prompt.token_ids",
      [](v1::GenerateRequest* r) { r->mutable_token_ids()->clear_ids(); });
  add("prompt beyond the context", "prompt", [](v1::GenerateRequest* r) {
    for (int i = 0; i < kContext; ++i) r->mutable_token_ids()->add_ids(5);
  });
  add("token id = vocab", "prompt.token_ids",
      [vocab](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(vocab); });
  add("negative token id", "prompt.token_ids",
      [](v1::GenerateRequest* r) { r->mutable_token_ids()->set_ids(1, -1); });
  add("malformed UTF-8 prompt", "prompt.text",
      [](v1::GenerateRequest* r) { r->set_text(std::string("In the \xff\xfe beginning")); });
  add("truncated UTF-8 prompt", "prompt.text",
      [](v1::GenerateRequest* r) { r->set_text(std::string("In the \xc3")); });
  add("malformed UTF-8 stop", "sampling.stop[1]", [](v1::GenerateRequest* r) {
    r->mutable_sampling()->add_stop("and");
    r->mutable_sampling()->add_stop(std::string("\xc3("));
  });
  add("negative max_new_tokens", "sampling.max_new_tokens",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_new_tokens(-3); });
  add("max_new_tokens above the limit", "sampling.max_new_tokens", [](v1::GenerateRequest* r) {
    r->mutable_sampling()->set_max_new_tokens(kMaxNewTokensLimit + 1);
  });
  add("negative temperature", "sampling.temperature",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-0.5f); });
  add("top_p 0", "sampling.top_p",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(0.0f); });
  add("top_p 1.5", "sampling.top_p",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); });
  add("negative top_k", "sampling.top_k",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_k(-1); });
  add("min_p 1", "sampling.min_p",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_min_p(1.0f); });
  add("repetition_penalty 0", "sampling.repetition_penalty",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_repetition_penalty(0.0f); });
  add("logprobs above the limit", "sampling.logprobs",
      [](v1::GenerateRequest* r) { r->mutable_sampling()->set_logprobs(kMaxLogprobs + 1); });
  add("stop token outside the vocabulary", "sampling.stop_token_ids",
      [vocab](v1::GenerateRequest* r) { r->mutable_sampling()->add_stop_token_ids(vocab); });
  return cases;
}

TEST_F(ValidationTest, BadRequestsAreInvalidArgumentNamingTheFieldWhileAValidOneStreams) {
  auto tokenizer = Tokenizer::Load(DemoDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // The valid request: a text prompt, long enough to stream throughout the bad ones.
  const std::string text = "In the beginning";
  v1::GenerateRequest good = IdsRequest({}, TestSampling(200));
  good.set_text(text);
  const int64_t finished_before = cluster_->gateway()->scheduler()->Stats().finished;
  StreamResult streamed;
  std::thread valid([&] { streamed = RunGenerate(cluster_->stub(), good); });

  const std::vector<BadRequest> cases = BadRequests(cluster_->config().vocab_size);
  for (const BadRequest& c : cases) {
    SCOPED_TRACE(c.name);
    StreamResult r = RunGenerate(cluster_->stub(), c.request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message();
    EXPECT_THAT(r.status.error_message(), HasSubstr(c.field));
    EXPECT_EQ(r.chunks, 0);
    // The unary call validates the same way.
    grpc::ClientContext ctx;
    v1::GenerateResponse response;
    grpc::Status unary = cluster_->stub()->GenerateUnary(&ctx, c.request, &response);
    EXPECT_EQ(unary.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(unary.error_message(), HasSubstr(c.field));
  }
  valid.join();

  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  auto backend = CreateCpuBackend();
  auto engine = Engine::Create(DemoDir(), EngineOptions{}, backend.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto prompt = (*tokenizer)->Encode(text, true);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt, (std::vector<int32_t>{1, 1239, 325, 2679}));  // models/jamba-demo/README
  GenerateRequest request;
  request.prompt = *prompt;
  request.params = TestSampling(200);
  auto want = Generate(engine->get(), tokenizer->get(), request);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(streamed.token_ids, want->token_ids);
  EXPECT_EQ(streamed.text, want->text);
  EXPECT_EQ(streamed.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(streamed.prompt_tokens, 4);
  EXPECT_EQ(streamed.completion_tokens, 200);
  // None of the bad requests reached the scheduler.
  const SchedulerStats stats = cluster_->gateway()->scheduler()->Stats();
  EXPECT_EQ(stats.finished, finished_before + 1);
  EXPECT_TRUE(cluster_->WaitForEmptyPools(absl::Seconds(10)).ok());
}

// A layer worker's Forward refuses bad sampling of device-sampled rows with INVALID_ARGUMENT
// naming the problem, before touching any state: the sequence then still takes its prompt.
TEST_F(ValidationTest, LayerWorkerRefusesBadRowSampling) {
  auto stub = v1::LayerWorker::NewStub(MakeInternalChannel(cluster_->layer_addresses()[0]));
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ((*stub).*method)(&ctx, request, response);
  };
  v1::CreateSequencesRequest create;
  create.add_sequence_ids(9001);
  v1::CreateSequencesResponse created;
  ASSERT_TRUE(call(&v1::LayerWorker::Stub::CreateSequences, create, &created).ok());
  auto forward = [&](v1::LogitsRows rows, const v1::RowSampling* sampling) {
    v1::ForwardRequest request;
    v1::SequenceSlice* slice = request.add_sequences();
    slice->set_sequence_id(9001);
    slice->set_n_tokens(2);
    slice->set_n_past(0);
    slice->set_logits(rows);
    if (sampling != nullptr) *slice->mutable_sampling() = *sampling;
    request.mutable_token_ids()->add_ids(1);
    request.mutable_token_ids()->add_ids(2);
    v1::ForwardResponse response;
    return call(&v1::LayerWorker::Stub::Forward, request, &response);
  };
  v1::RowSampling good;
  good.set_temperature(0.8f);
  good.set_top_p(0.9f);
  good.set_uniform(0.25);
  v1::RowSampling greedy = good, top_p_zero = good, uniform_one = good;
  greedy.set_temperature(0.0f);
  top_p_zero.set_top_p(0.0f);
  uniform_one.set_uniform(1.0);
  struct Case {
    const v1::RowSampling* sampling;
    const char* message;
  };
  for (const Case& c :
       {Case{nullptr, "without sampling"}, Case{&greedy, "temperature must be"},
        Case{&top_p_zero, "sampling out of range"}, Case{&uniform_one, "sampling out of range"}}) {
    const grpc::Status s = forward(v1::LOGITS_ROWS_SAMPLED_TOKEN, c.sampling);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  EXPECT_TRUE(forward(v1::LOGITS_ROWS_SAMPLED_TOKEN, &good).ok());  // n_past 0: nothing absorbed
  v1::ReleaseSequencesRequest release;
  release.add_sequence_ids(9001);
  v1::ReleaseSequencesResponse released;
  EXPECT_TRUE(call(&v1::LayerWorker::Stub::ReleaseSequences, release, &released).ok());
}

TEST_F(ValidationTest, TokenizeDetokenizeRoundTrip) {
  const std::string text = "And God said, Let there be light: and there was light.\n";
  v1::TokenizeRequest tr;
  tr.set_text(text);
  tr.set_add_special_tokens(true);
  v1::TokenizeResponse tokens;
  grpc::ClientContext c1;
  ASSERT_TRUE(cluster_->stub()->Tokenize(&c1, tr, &tokens).ok());
  auto tokenizer = Tokenizer::Load(DemoDir());
  ASSERT_TRUE(tokenizer.ok());
  auto want = (*tokenizer)->Encode(text, true);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(std::vector<int32_t>(tokens.token_ids().begin(), tokens.token_ids().end()), *want);
  ASSERT_GT(tokens.token_ids_size(), 1);
  EXPECT_EQ(tokens.token_ids(0), 1);  // BOS

  v1::DetokenizeRequest dr;
  *dr.mutable_token_ids() = tokens.token_ids();
  dr.set_skip_special_tokens(true);
  v1::DetokenizeResponse back;
  grpc::ClientContext c2;
  ASSERT_TRUE(cluster_->stub()->Detokenize(&c2, dr, &back).ok());
  EXPECT_EQ(back.text(), text);

  // Bad input names the field here too.
  tr.set_text(std::string("light\xff"));
  grpc::ClientContext c3;
  grpc::Status bad = cluster_->stub()->Tokenize(&c3, tr, &tokens);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("text"));
  dr.add_token_ids(static_cast<int32_t>(cluster_->config().vocab_size));
  grpc::ClientContext c4;
  bad = cluster_->stub()->Detokenize(&c4, dr, &back);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("token_ids"));
}

TEST_F(ValidationTest, ModelInfoDescribesTheModelAndEveryWorker) {
  grpc::ClientContext ctx;
  v1::ModelInfoResponse info;
  grpc::Status s = cluster_->stub()->ModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.architecture(), "jamba");
  EXPECT_EQ(info.vocab_size(), 4096);
  EXPECT_EQ(info.context_limit(), kContext);
  auto checkpoint = Checkpoint::Open(DemoDir());
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(info.fingerprint(), (*checkpoint)->fingerprint());
  // models/jamba-demo/config.json: attention every 4th layer from 2, MoE every 2nd from 1.
  ASSERT_EQ(info.layers_size(), 8);
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(testing::Message() << "layer " << i);
    EXPECT_EQ(info.layers(i).mixer(), i % 4 == 2 ? "attention" : "mamba");
    EXPECT_EQ(info.layers(i).ffn(), i % 2 == 1 ? "moe" : "mlp");
  }

  const std::vector<std::string> layers = cluster_->layer_addresses();
  const std::vector<std::string> experts = cluster_->expert_addresses();
  ASSERT_EQ(layers.size(), 2u);
  ASSERT_EQ(experts.size(), 4u);
  ASSERT_EQ(info.workers_size(), 6);
  for (int i = 0; i < 2; ++i) {
    const v1::WorkerInfo& w = info.workers(i);
    EXPECT_EQ(w.address(), layers[i]);
    EXPECT_EQ(w.role(), "layer");
    EXPECT_EQ(w.layer_begin(), 4 * i);
    EXPECT_EQ(w.layer_end(), 4 * i + 4);
    EXPECT_EQ(w.experts_size(), 0);  // every expert is remote
  }
  // Expert workers as placed by DefaultExpertSpecs: expert e on worker e % 4, expert 0 also
  // on worker 1, for each MoE layer.
  for (int i = 0; i < 4; ++i) {
    const v1::WorkerInfo& w = info.workers(2 + i);
    EXPECT_EQ(w.address(), experts[i]);
    EXPECT_EQ(w.role(), "expert");
    std::vector<std::pair<int, int>> held, want;
    for (const v1::ExpertKey& k : w.experts()) held.emplace_back(k.layer(), k.expert());
    for (int layer : {1, 3, 5, 7}) {
      if (i == 1) want.emplace_back(layer, 0);
      want.emplace_back(layer, i);
    }
    EXPECT_EQ(held, want) << "expert worker " << i;
  }
}

// ---- Clusters the gateway must refuse. ----------------------------------------------------

GatewayConfig RefusedGateway(const std::string& model, std::vector<std::string> workers) {
  GatewayConfig g;
  g.model_dir = ModelFixtureDir(model);
  g.layer_workers = std::move(workers);
  g.pipeline.connect_timeout = absl::Seconds(20);
  return g;
}

absl::StatusOr<std::unique_ptr<LayerServer>> FixtureLayerWorker(const std::string& model,
                                                                int64_t begin, int64_t end) {
  LayerWorkerConfig config;
  config.model_dir = ModelFixtureDir(model);
  config.layer_begin = begin;
  config.layer_end = end;
  return StartLayerServer(config);
}

TEST(GatewayRefusesTest, LayerWorkerOfAnotherCheckpoint) {
  auto first = FixtureLayerWorker("jamba_moe_gqa", 0, 3);
  auto other = FixtureLayerWorker("jamba_auto_dtrank", 3, 6);  // same layer count
  ASSERT_TRUE(first.ok() && other.ok());
  auto g = Gateway::Create(RefusedGateway("jamba_moe_gqa", {(*first)->address, (*other)->address}));
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(g.status())) << g.status();
  EXPECT_THAT(g.status().message(), HasSubstr((*other)->address));
  EXPECT_THAT(g.status().message(), Not(HasSubstr((*first)->address)));
}

TEST(GatewayRefusesTest, StagesThatAreNotContiguous) {
  auto a = FixtureLayerWorker("jamba_moe_gqa", 0, 2);
  auto b = FixtureLayerWorker("jamba_moe_gqa", 3, 6);  // layer 2 is missing
  auto c = FixtureLayerWorker("jamba_moe_gqa", 2, 6);
  auto d = FixtureLayerWorker("jamba_moe_gqa", 0, 3);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  struct Case {
    std::vector<std::string> workers;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{(*a)->address, (*b)->address}, (*b)->address},                 // a gap
      {{(*c)->address, (*a)->address}, (*c)->address},                 // out of order
      {{(*d)->address, (*c)->address}, (*c)->address},                 // overlap
      {{(*a)->address, (*c)->address, (*b)->address}, (*c)->address},  // head mid-way
  };
  for (const Case& k : cases) {
    auto g = Gateway::Create(RefusedGateway("jamba_moe_gqa", k.workers));
    ASSERT_FALSE(g.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(g.status())) << g.status();
    EXPECT_THAT(g.status().message(), HasSubstr(k.named));
  }
  // The right order works, proving the workers themselves are fine.
  auto ok = Gateway::Create(RefusedGateway("jamba_moe_gqa", {(*a)->address, (*c)->address}));
  EXPECT_TRUE(ok.ok()) << ok.status();
}

}  // namespace
}  // namespace jamba
