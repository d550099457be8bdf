// Generate(): sampling options end to end on a fixture, checked against transformers'
// reference logits where the expected value is independent of our code; on the CPU backend
// and on the CUDA backend (skipped where the build has none or no GPU is present).
#include "engine/runtime/generator.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend_factory.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

// The parameter is the device ("cpu", "cuda").
class GeneratorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(GetParam());
    if (absl::IsUnavailable(backend.status())) GTEST_SKIP() << backend.status();
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
    auto ref = LoadModelReference("mixtral");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = *std::move(ref);
    EngineOptions options;
    options.max_context = 40;
    auto engine = Engine::Create(ModelFixtureDir("mixtral"), options, backend_.get());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }

  GenerateRequest Greedy(int32_t max_new) {
    GenerateRequest r;
    r.prompt = ref_.prompt;
    r.params.temperature = 0.0f;
    r.params.max_new_tokens = max_new;
    r.params.ignore_eos = true;
    return r;
  }

  std::unique_ptr<Backend> backend_;
  ModelReference ref_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(GeneratorTest, StopTokenEndsWithStopAndIsReturned) {
  GenerateRequest r = Greedy(32);
  const int32_t stop = ref_.greedy[5];
  r.params.stop_token_ids = {stop};
  size_t first = 0;
  while (ref_.greedy[first] != stop) ++first;
  auto result = Generate(engine_.get(), nullptr, r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish_reason, FinishReason::kStop);
  EXPECT_EQ(result->token_ids,
            std::vector<int32_t>(ref_.greedy.begin(), ref_.greedy.begin() + first + 1));
}

TEST_P(GeneratorTest, ContextLimitEndsWithLength) {
  // 20 prompt tokens, context 40: at most 20 new tokens whatever max_new_tokens says.
  auto result = Generate(engine_.get(), nullptr, Greedy(1000));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->finish_reason, FinishReason::kLength);
  ASSERT_EQ(result->token_ids.size(), 20u);
  EXPECT_EQ(result->token_ids, std::vector<int32_t>(ref_.greedy.begin(), ref_.greedy.begin() + 20));
  GenerateRequest too_long = Greedy(1);
  too_long.prompt.assign(41, 3);
  EXPECT_TRUE(absl::IsOutOfRange(Generate(engine_.get(), nullptr, too_long).status()));
}

TEST_P(GeneratorTest, SeedReproducesSamples) {
  GenerateRequest r = Greedy(24);
  r.params.temperature = 1.0f;
  r.params.seed = 42;
  auto a = Generate(engine_.get(), nullptr, r);
  auto b = Generate(engine_.get(), nullptr, r);
  r.params.seed = 43;
  auto c = Generate(engine_.get(), nullptr, r);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->token_ids, b->token_ids);
  EXPECT_NE(a->token_ids, c->token_ids);  // 24 draws over 256 ids: equal only by accident
}

// Requests without penalty or logprobs are sampled on the device (LogitsRows::kLastToken, the
// RNG draw sent along); asking for logprobs moves the same request to the host sampler, which
// draws from the same RNG stream. The tokens must not change.
TEST_P(GeneratorTest, DeviceSamplingGivesTheHostSamplersTokens) {
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
  };
  const Case cases[] = {{1.0f, 0, 1.0f, 0.0f},  {0.7f, 20, 1.0f, 0.0f},  {1.3f, 0, 0.8f, 0.0f},
                        {1.0f, 0, 1.0f, 0.05f}, {0.9f, 40, 0.9f, 0.02f}, {0.0f, 0, 1.0f, 0.0f}};
  int differs_from_greedy = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "T " << c.temperature << " top_k " << c.top_k << " top_p "
                                    << c.top_p << " min_p " << c.min_p);
    GenerateRequest r = Greedy(16);
    r.params.temperature = c.temperature;
    r.params.top_k = c.top_k;
    r.params.top_p = c.top_p;
    r.params.min_p = c.min_p;
    r.params.seed = 1234;
    auto device = Generate(engine_.get(), nullptr, r);
    r.params.logprobs = 0;
    auto host = Generate(engine_.get(), nullptr, r);
    ASSERT_TRUE(device.ok()) << device.status();
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_EQ(device->token_ids, host->token_ids);
    EXPECT_TRUE(device->logprobs.empty());
    EXPECT_EQ(host->logprobs.size(), 16u);
    if (device->token_ids != std::vector<int32_t>(ref_.greedy.begin(), ref_.greedy.begin() + 16)) {
      ++differs_from_greedy;
    }
  }
  EXPECT_GE(differs_from_greedy, 4);  // the sampled cases really sampled
}

TEST_P(GeneratorTest, PromptLogprobsAndLogitsMatchTransformers) {
  GenerateRequest r = Greedy(1);
  r.params.prompt_logprobs = 3;
  r.params.logprobs = 2;
  r.keep_prompt_logits = true;
  r.prefill_chunk = 6;
  auto result = Generate(engine_.get(), nullptr, r);
  ASSERT_TRUE(result.ok()) << result.status();
  const int64_t v = ref_.vocab, t = static_cast<int64_t>(ref_.prompt.size());
  ASSERT_EQ(result->prompt_logits.size(), ref_.logits.size());
  EXPECT_LE(MaxAbsDiff(result->prompt_logits.data(), ref_.logits.data(), ref_.logits.size()), 1e-4);
  ASSERT_EQ(static_cast<int64_t>(result->prompt_logprobs.size()), t - 1);
  for (int64_t p = 1; p < t; ++p) {
    // log_softmax of transformers' logits at position p - 1, in double.
    const float* row = ref_.logits.data() + (p - 1) * v;
    double mx = row[0], sum = 0;
    for (int64_t i = 0; i < v; ++i) mx = std::max<double>(mx, row[i]);
    for (int64_t i = 0; i < v; ++i) sum += std::exp(row[i] - mx);
    const double expected = row[ref_.prompt[p]] - mx - std::log(sum);
    const TokenLogprob& lp = result->prompt_logprobs[p - 1];
    EXPECT_EQ(lp.token, ref_.prompt[p]);
    EXPECT_NEAR(lp.logprob, expected, 1e-4) << "position " << p;
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
  }
  ASSERT_EQ(result->logprobs.size(), 1u);
  EXPECT_EQ(result->logprobs[0].token, ref_.greedy[0]);
  EXPECT_EQ(result->logprobs[0].top[0].first, ref_.greedy[0]);  // greedy picks the top token
}

TEST_P(GeneratorTest, InvalidRequestsAreRejected) {
  GenerateRequest r = Greedy(4);
  r.params.top_p = 0.0f;
  EXPECT_TRUE(absl::IsInvalidArgument(Generate(engine_.get(), nullptr, r).status()));
  r = Greedy(4);
  r.prompt.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(Generate(engine_.get(), nullptr, r).status()));
  r = Greedy(4);
  r.params.stop_strings = {"x"};  // needs a tokenizer
  EXPECT_TRUE(absl::IsInvalidArgument(Generate(engine_.get(), nullptr, r).status()));
  r = Greedy(4);
  r.prompt.push_back(9999);
  EXPECT_TRUE(absl::IsInvalidArgument(Generate(engine_.get(), nullptr, r).status()));
  EXPECT_EQ(engine_->Stats().live_sequences, 0);  // failed requests leave nothing behind
}

INSTANTIATE_TEST_SUITE_P(Devices, GeneratorTest, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace jamba
