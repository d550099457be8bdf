// The cluster (gateway + 1-3 layer workers + 4 expert workers, all real gRPC servers on
// loopback) against the single process: the kernels are batch-invariant, so a sequence's
// logits do not depend on what else is in its batch, how its prompt was chunked, how many
// batches were in flight, how a layer worker split its batch into micro-batches, or which
// stage / expert replica computed it - the cluster must reproduce jamba::Generate's tokens
// exactly, in every layout.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/runtime/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/row_sampler.h"
#include "rpc/stage_error.h"
#include "tests/engine/runtime/reference_fixture.h"
#include "tests/gateway/cluster_test_util.h"
#include "tests/gateway/in_process_cluster.h"

namespace jamba {
namespace {

// Both paths compute the same floats in the same order; exact equality is expected, this is
// the bound the engine's own self-consistency tests use.
constexpr double kLogitsTolerance = 1e-5;

// 16 distinct prompt lengths from 1 to 40.
const int64_t kPromptLengths[] = {1, 2, 3, 4, 5, 7, 9, 12, 15, 18, 22, 26, 30, 34, 37, 40};
constexpr int32_t kNewTokens = 12;

// How the cluster is laid out and driven.
struct Layout {
  int layer_workers;
  int32_t pipeline_depth;  // batches in flight per pipeline
  int32_t micro_batches;   // per layer worker batch
  int pipelines = 1;       // sets of stages sharing the expert workers
};

std::string LayoutName(const Layout& l) {
  return absl::StrCat(l.pipelines, "x", l.layer_workers, "stages_depth", l.pipeline_depth, "_micro",
                      l.micro_batches);
}

class ClusterEquivalenceTest : public ::testing::TestWithParam<std::tuple<std::string, Layout>> {
 protected:
  void SetUp() override {
    const std::string& fixture = std::get<0>(GetParam());
    const Layout& layout = std::get<1>(GetParam());
    backend_ = CreateCpuBackend();
    auto engine = Engine::Create(ModelFixtureDir(fixture), EngineOptions{}, backend_.get());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    const ModelConfig& config = engine_->config();

    ClusterOptions options;
    options.model_dir = ModelFixtureDir(fixture);
    options.layer_workers = std::min<int>(layout.layer_workers, config.num_layers);
    options.micro_batches = layout.micro_batches;
    options.pipelines = layout.pipelines;
    options.scheduler.pipeline_depth = layout.pipeline_depth;
    options.expert_specs = DefaultExpertSpecs(config, 4);
    // Small prefill chunks and step budget, so prompts are split over steps and share them
    // with other sequences' decodes.
    options.scheduler.prefill_chunk = 5;
    options.scheduler.max_tokens_per_step = 40;
    auto cluster = InProcessCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    moe_ = config.NumMoeLayers() > 0;
    if (moe_) {
      // The default split replicates expert 0 on a second worker.
      ASSERT_EQ(cluster_->expert_addresses().size(), 4u);
    } else {
      ASSERT_TRUE(cluster_->expert_addresses().empty());
    }
  }

  // Runs every prompt concurrently through the gateway and compares each stream with the
  // single process running that prompt alone.
  void ExpectStreamsMatchSingleProcess(const SamplingParams& params) {
    const int64_t vocab = engine_->vocab_size();
    const size_t n = std::size(kPromptLengths);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = 0; i < n; ++i) prompts.push_back(TestPrompt(kPromptLengths[i], vocab, i));
    std::vector<StreamResult> results(n);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < n; ++i) {
      threads.emplace_back(
          [&, i] { results[i] = RunGenerate(cluster_->stub(), IdsRequest(prompts[i], params)); });
    }
    for (std::thread& t : threads) t.join();
    for (size_t i = 0; i < n; ++i) {
      SCOPED_TRACE(testing::Message() << "prompt " << i << " of length " << prompts[i].size());
      auto want = SoloGenerate(engine_.get(), prompts[i], params);
      ASSERT_TRUE(want.ok()) << want.status();
      ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
      EXPECT_EQ(results[i].token_ids, want->token_ids);
      EXPECT_EQ(static_cast<int32_t>(want->token_ids.size()), params.max_new_tokens);
      EXPECT_EQ(results[i].finish_reason, v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(results[i].finish_chunks, 1);
      EXPECT_EQ(results[i].prompt_tokens, static_cast<int32_t>(prompts[i].size()));
      EXPECT_EQ(results[i].completion_tokens, params.max_new_tokens);
    }
    // Every finished sequence was released on every stage.
    EXPECT_TRUE(cluster_->WaitForEmptyPools(absl::Seconds(10)).ok());
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<InProcessCluster> cluster_;
  bool moe_ = false;
};

TEST_P(ClusterEquivalenceTest, ConcurrentGreedyStreamsMatchSingleProcess) {
  ExpectStreamsMatchSingleProcess(TestSampling(kNewTokens));
  const SchedulerStats stats = cluster_->gateway()->scheduler()->Stats();
  EXPECT_EQ(stats.generated_tokens, static_cast<int64_t>(std::size(kPromptLengths)) * kNewTokens);
  EXPECT_EQ(stats.finished, static_cast<int64_t>(std::size(kPromptLengths)));
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.kv_blocks_reserved, 0);
  // The layout was really exercised: as many batches in flight as the depth allows, and
  // micro-batches (or batches) interleaved on a layer worker while experts computed.
  const Layout& layout = std::get<1>(GetParam());
  EXPECT_EQ(stats.pipeline_depth, layout.pipeline_depth);
  EXPECT_GE(stats.max_in_flight, layout.pipeline_depth);
  EXPECT_LE(stats.max_in_flight, layout.pipeline_depth * layout.pipelines);
  ASSERT_EQ(stats.pipelines.size(), static_cast<size_t>(layout.pipelines));
  // Every pipeline's every stage computed: the sequences were spread over the pipelines.
  for (LayerServer* l : cluster_->layer_servers()) {
    EXPECT_GT(l->service->GetStats().forward_calls, 0) << l->address;
  }
  // Micro-batches are submitted together, so one part begins while another waits on the
  // expert workers whenever a batch is split (batches in flight interleave only when two meet
  // at one stage, which timing decides).
  if (moe_ && layout.micro_batches > 1) {
    int64_t interleaved = 0;
    for (LayerServer* l : cluster_->layer_servers()) {
      interleaved = std::max(interleaved, l->service->GetStats().max_open_batches);
    }
    EXPECT_GE(interleaved, 2);
  }
}

TEST_P(ClusterEquivalenceTest, SeededSamplingMatchesSingleProcess) {
  ExpectStreamsMatchSingleProcess(TestSampling(kNewTokens, 0.8f, 7));
}

TEST_P(ClusterEquivalenceTest, PipelineLogitsEqualEngineLogits) {
  SequenceExecutor* executor = cluster_->gateway()->executor();
  ASSERT_NE(cluster_->gateway()->pipeline(), nullptr);
  const int64_t vocab = engine_->vocab_size();
  // One ragged batch of three whole prompts, every row's logits; then one more chunk of the
  // first sequence (prefill continuing after a first forward).
  const std::vector<std::vector<int32_t>> prompts = {
      TestPrompt(5, vocab, 101), TestPrompt(17, vocab, 102), TestPrompt(33, vocab, 103)};
  const std::vector<int32_t> more = TestPrompt(6, vocab, 104);
  const std::vector<SequenceId> ids = {11, 12, 13};  // far below the scheduler's ids
  ASSERT_TRUE(executor->Create(ids).ok());
  std::vector<StageItem> items;
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < prompts.size(); ++i) {
    items.push_back(
        StageItem{ids[i], static_cast<int32_t>(prompts[i].size()), 0, LogitsRows::kAll});
    tokens.insert(tokens.end(), prompts[i].begin(), prompts[i].end());
  }
  auto got = executor->Forward(items, tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  StageItem next{ids[0], static_cast<int32_t>(more.size()), static_cast<int64_t>(prompts[0].size()),
                 LogitsRows::kAll};
  auto got_more = executor->Forward(absl::MakeConstSpan(&next, 1), more);
  ASSERT_TRUE(got_more.ok()) << got_more.status();
  ASSERT_TRUE(executor->Release(ids).ok());
  EXPECT_TRUE(cluster_->WaitForEmptyPools(absl::Seconds(10)).ok());

  ASSERT_EQ(got->vocab, vocab);
  bool bit_exact = true;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto seq = engine_->AddSequence();
    ASSERT_TRUE(seq.ok());
    StepItem item{*seq, prompts[i], LogitsRows::kAll};
    auto want = engine_->Step(absl::MakeConstSpan(&item, 1));
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ(got->row_count[i], static_cast<int64_t>(prompts[i].size()));
    const float* g = got->Row(i, 0).data();
    const size_t n = want->logits.size();
    EXPECT_LE(MaxAbsDiff(g, want->logits.data(), n), kLogitsTolerance) << "sequence " << i;
    bit_exact = bit_exact && std::memcmp(g, want->logits.data(), n * sizeof(float)) == 0;
    if (i == 0) {
      StepItem cont{*seq, more, LogitsRows::kAll};
      auto want_more = engine_->Step(absl::MakeConstSpan(&cont, 1));
      ASSERT_TRUE(want_more.ok()) << want_more.status();
      ASSERT_EQ(got_more->logits.size(), want_more->logits.size());
      EXPECT_LE(
          MaxAbsDiff(got_more->logits.data(), want_more->logits.data(), want_more->logits.size()),
          kLogitsTolerance);
    }
    ASSERT_TRUE(engine_->RemoveSequence(*seq).ok());
  }
  // Batch-invariant kernels: in fact the very same floats.
  EXPECT_TRUE(bit_exact);
}

// LogitsRows::kLastToken over the wire: the last layer worker answers the token sampled from
// each such sequence's last row (greedy, or with the RowSampling sent along) and no logits for
// it, while kLast sequences of the same batch still get theirs; the tokens are what the host's
// row sampler draws from the logits the same prompts get as kLast.
TEST_P(ClusterEquivalenceTest, TokenRowsCarryOnlyTheSampledToken) {
  SequenceExecutor* executor = cluster_->gateway()->executor();
  const int64_t vocab = engine_->vocab_size();
  const std::vector<int32_t> a = TestPrompt(9, vocab, 201), b = TestPrompt(4, vocab, 202);
  const std::vector<SequenceId> ids = {21, 22, 23, 24};
  ASSERT_TRUE(executor->Create(ids).ok());
  const RowSampling sampled{0.61, 1.7f, 50, 0.9f, 0.01f};
  // a greedy as kLastToken, b as kLast, a again as kLast, b sampled as kLastToken.
  std::vector<StageItem> items = {{ids[0], 9, 0, LogitsRows::kLastToken},
                                  {ids[1], 4, 0, LogitsRows::kLast},
                                  {ids[2], 9, 0, LogitsRows::kLast},
                                  {ids[3], 4, 0, LogitsRows::kLastToken, sampled}};
  std::vector<int32_t> tokens = a;
  tokens.insert(tokens.end(), b.begin(), b.end());
  tokens.insert(tokens.end(), a.begin(), a.end());
  tokens.insert(tokens.end(), b.begin(), b.end());
  auto got = executor->Forward(items, tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(executor->Release(ids).ok());
  EXPECT_EQ(got->row_count, (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_EQ(got->logits.size(), static_cast<size_t>(2 * vocab));
  ASSERT_EQ(got->token.size(), 4u);
  EXPECT_EQ(got->token[1], -1);
  EXPECT_EQ(got->token[2], -1);
  absl::Span<const float> last_a = got->Last(2);
  EXPECT_EQ(got->token[0], std::max_element(last_a.begin(), last_a.end()) - last_a.begin());
  RowSampler reference;
  reference.Process(got->Last(1), sampled);
  EXPECT_GT(reference.candidates().size(), 1u);  // a real draw, not a forced choice
  EXPECT_EQ(got->token[3], reference.Draw(sampled.uniform));
}

// An expert worker whose experts are replicated goes away while streams run: the layer
// workers retry its share on the replica, and the tokens stay exactly the single process's.
TEST(ClusterFailoverTest, LosingAReplicatedExpertWorkerChangesNoToken) {
  const std::string model = ModelFixtureDir("jamba_moe_gqa");
  auto backend = CreateCpuBackend();
  auto engine = Engine::Create(model, EngineOptions{}, backend.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ClusterOptions options;
  options.model_dir = model;
  // Worker 0 holds only expert 0 of each MoE layer, which worker 1 holds too.
  options.expert_specs = DefaultExpertSpecs((*engine)->config(), 4);
  auto cluster = InProcessCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  InProcessCluster& c = **cluster;

  const SamplingParams params = TestSampling(40);
  auto run_batch = [&](uint64_t salt, bool stop_mid_way) {
    const int n = 4;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < n; ++i)
      prompts.push_back(TestPrompt(3 + 5 * i, (*engine)->vocab_size(), salt + i));
    std::vector<StreamResult> results(n);
    std::vector<std::thread> threads;
    const int64_t before = c.gateway()->scheduler()->Stats().generated_tokens;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back(
          [&, i] { results[i] = RunGenerate(c.stub(), IdsRequest(prompts[i], params)); });
    }
    if (stop_mid_way) {
      // Once the streams are under way (bounded wait; they may also have finished).
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (c.gateway()->scheduler()->Stats().generated_tokens < before + 20 &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      c.StopExpertWorker(0);
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < n; ++i) {
      auto want = SoloGenerate(engine->get(), prompts[i], params);
      ASSERT_TRUE(want.ok()) << want.status();
      ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
      EXPECT_EQ(results[i].token_ids, want->token_ids) << "prompt " << i;
    }
  };
  run_batch(200, /*stop_mid_way=*/true);
  // Every step from now on first tries (or skips) the stopped worker.
  run_batch(300, /*stop_mid_way=*/false);
  EXPECT_TRUE(c.WaitForEmptyPools(absl::Seconds(10)).ok());
}

// Activations go stage to stage, so a failure of the last stage reaches the gateway through
// stage 0: the error still names the stage that failed (message and FailedStage), keeps its
// code, and ends the requests whose batches it touched.
TEST(ClusterStageFailureTest, AFailedStageIsNamedThroughTheChain) {
  ClusterOptions options;
  options.model_dir = ModelFixtureDir("jamba_moe_gqa");
  options.layer_workers = 3;
  auto cluster = InProcessCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  InProcessCluster& c = **cluster;
  const std::vector<std::string> stages = c.layer_addresses();
  SequenceExecutor* executor = c.gateway()->executor();
  const std::vector<int32_t> prompt = TestPrompt(7, c.config().vocab_size, 5);
  const std::vector<SequenceId> ids = {31};
  ASSERT_TRUE(executor->Create(ids).ok());
  const StageItem item{31, 7, 0, LogitsRows::kLast};
  c.StopLayerWorker(2);
  auto out = executor->Forward(absl::MakeConstSpan(&item, 1), prompt);
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(absl::IsUnavailable(out.status())) << out.status();
  EXPECT_THAT(std::string(out.status().message()),
              ::testing::StartsWith("layer worker " + stages[2] + ": Forward: "));
  EXPECT_EQ(FailedStage(out.status()), stages[2]);

  // And through the public API: the request fails with the stage named.
  const StreamResult r = RunGenerate(c.stub(), IdsRequest(prompt, TestSampling(4)));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(r.status.error_message(), ::testing::HasSubstr("layer worker " + stages[2]));
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, ClusterEquivalenceTest,
    ::testing::Combine(::testing::Values("jamba_moe_gqa", "jamba_auto_dtrank", "mixtral",
                                         "jamba_dense", "mamba", "falcon_mamba"),
                       // One batch at a time through 2 stages; as many batches as stages
                       // with micro-batches; more batches than stages.
                       ::testing::Values(Layout{2, 1, 1}, Layout{2, 2, 2}, Layout{3, 3, 3},
                                         Layout{2, 3, 2},
                                         // Two pipelines sharing the expert workers.
                                         Layout{2, 2, 1, 2})),
    [](const ::testing::TestParamInfo<std::tuple<std::string, Layout>>& info) {
      return absl::StrCat(std::get<0>(info.param), "_", LayoutName(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace jamba
