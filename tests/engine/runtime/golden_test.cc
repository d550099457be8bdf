// The engine against Hugging Face transformers on every fixture checkpoint (see
// tools/make_model_fixtures.py): full logits, greedy continuation, incremental decode, chunked
// prefill, ragged batches, and bf16 weights; on the CPU backend and, where the build has it
// and a GPU is present, on the CUDA backend (skipped otherwise), with the same tolerances.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/runtime/engine.h"
#include "engine/runtime/generator.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

// Agreement with transformers' fp32 forward (different summation order, same math).
constexpr double kReferenceTolerance = 1e-4;
// Agreement of two of our own runs that should compute the same numbers by different paths
// (incremental vs one-shot, chunked, batched).
constexpr double kSelfTolerance = 1e-5;
// bf16 weights against transformers run with the same bf16-rounded weights (bf16_rule in the
// fixture metadata): the rounding is identical, only the f32 summation order differs.
constexpr double kBf16Tolerance = 1e-4;

// (fixture, device)
class GoldenTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  const std::string& fixture() const { return std::get<0>(GetParam()); }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(std::get<1>(GetParam()));
    if (absl::IsUnavailable(backend.status())) GTEST_SKIP() << backend.status();
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
    auto ref = LoadModelReference(fixture());
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = *std::move(ref);
  }

  std::unique_ptr<Engine> MakeEngine(DType weights = DType::kF32, int32_t block_size = 4) {
    EngineOptions options;
    options.weight_dtype = weights;
    options.kv_block_size = block_size;  // small blocks: sequences span several
    options.max_sequences = 8;
    options.kv_cache_tokens = 1024;
    auto engine = Engine::Create(ModelFixtureDir(fixture()), options, backend_.get());
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  // Feeds `ids` to a fresh sequence in chunks of `chunk` and returns the logits of every
  // position, [ids, V].
  std::vector<float> ChunkedLogits(Engine* engine, const std::vector<int32_t>& ids, size_t chunk) {
    auto seq = engine->AddSequence();
    EXPECT_TRUE(seq.ok()) << seq.status();
    std::vector<float> all;
    for (size_t b = 0; b < ids.size(); b += chunk) {
      const size_t n = std::min(chunk, ids.size() - b);
      StepItem item{*seq, absl::MakeConstSpan(ids.data() + b, n), LogitsRows::kAll};
      auto out = engine->Step(absl::MakeConstSpan(&item, 1));
      EXPECT_TRUE(out.ok()) << out.status();
      if (!out.ok()) break;
      all.insert(all.end(), out->logits.begin(), out->logits.end());
    }
    EXPECT_TRUE(engine->RemoveSequence(*seq).ok());
    return all;
  }

  std::unique_ptr<Backend> backend_;
  ModelReference ref_;
};

TEST_P(GoldenTest, FullSequenceLogitsMatchTransformers) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<float> logits = ChunkedLogits(engine.get(), ref_.prompt, ref_.prompt.size());
  ASSERT_EQ(logits.size(), ref_.logits.size());
  EXPECT_LE(MaxAbsDiff(logits.data(), ref_.logits.data(), logits.size()), kReferenceTolerance);
}

TEST_P(GoldenTest, GreedyContinuationMatchesTransformers) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  GenerateRequest request;
  request.prompt = ref_.prompt;
  request.params.temperature = 0.0f;
  request.params.max_new_tokens = static_cast<int32_t>(ref_.greedy.size());
  request.params.ignore_eos = true;  // the reference never stops early
  request.prefill_chunk = 7;
  auto result = Generate(engine.get(), nullptr, request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->token_ids, ref_.greedy);
  EXPECT_EQ(result->finish_reason, FinishReason::kLength);
  EXPECT_EQ(engine->Stats().live_sequences, 0);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

// MatMulPrecision::kBf16 (activations of the bf16-weight products rounded to bf16, as PyTorch
// computes a bf16 model's products) against transformers with the same bf16 weights and f32
// activations. Each product's inputs move by up to 2^-9 (bf16's half ulp, relative); through
// the fixtures' layers the logits moved by 1.1 to 3.7 x 2^-9 of the largest logit (measured on
// all six), so the bound is 8 x 2^-9 of it. The rounding must also show (the logits differ by
// more than kBf16Tolerance, which f32 activations meet), and every position whose reference
// top-1 margin exceeds twice the bound keeps its argmax.
TEST_P(GoldenTest, Bf16ActivationsStayWithinBf16RoundingOfTransformers) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(
      std::get<1>(GetParam()), BackendOptions{.matmul_precision = MatMulPrecision::kBf16});
  ASSERT_TRUE(backend.ok()) << backend.status();
  backend_ = *std::move(backend);
  auto engine = MakeEngine(DType::kBF16);
  ASSERT_NE(engine, nullptr);
  const std::vector<float> logits = ChunkedLogits(engine.get(), ref_.prompt, ref_.prompt.size());
  const std::vector<float>& want = ref_.logits_bf16w;
  ASSERT_EQ(logits.size(), want.size());
  double largest = 0.0;
  for (float v : want) largest = std::max(largest, std::fabs(double{v}));
  const double bound = 8 * std::ldexp(1.0, -9) * largest;
  const double diff = MaxAbsDiff(logits.data(), want.data(), logits.size());
  EXPECT_LE(diff, bound);
  EXPECT_GT(diff, kBf16Tolerance) << "the bf16 rounding of the activations does not show";
  const size_t vocab = want.size() / ref_.prompt.size();
  int checked = 0;
  for (size_t t = 0; t < ref_.prompt.size(); ++t) {
    const auto row = want.begin() + t * vocab;
    const size_t top = std::max_element(row, row + vocab) - row;
    float second = -INFINITY;
    for (size_t v = 0; v < vocab; ++v) {
      if (v != top) second = std::max(second, row[v]);
    }
    if (row[top] - second <= 2 * bound) continue;
    const auto got = logits.begin() + t * vocab;
    EXPECT_EQ(static_cast<size_t>(std::max_element(got, got + vocab) - got), top)
        << "position " << t;
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no position with a clear top-1 to check";
}

TEST_P(GoldenTest, PrefillThenDecodeEqualsOnePrefill) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const std::vector<float> whole = ChunkedLogits(engine.get(), ref_.prompt, ref_.prompt.size());
  const size_t n = ref_.prompt.size();
  auto seq = engine->AddSequence();
  ASSERT_TRUE(seq.ok());
  StepItem prefill{*seq, absl::MakeConstSpan(ref_.prompt.data(), n - 1), LogitsRows::kLast};
  ASSERT_TRUE(engine->Step(absl::MakeConstSpan(&prefill, 1)).ok());
  StepItem decode{*seq, absl::MakeConstSpan(ref_.prompt.data() + n - 1, 1), LogitsRows::kLast};
  auto out = engine->Step(absl::MakeConstSpan(&decode, 1));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LE(MaxAbsDiff(out->Last(0).data(), whole.data() + (n - 1) * ref_.vocab, ref_.vocab),
            kSelfTolerance);
}

TEST_P(GoldenTest, ChunkedPrefillEqualsOnePrefill) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const std::vector<float> whole = ChunkedLogits(engine.get(), ref_.prompt, ref_.prompt.size());
  for (size_t chunk : {1, 3, 7}) {
    const std::vector<float> chunked = ChunkedLogits(engine.get(), ref_.prompt, chunk);
    ASSERT_EQ(chunked.size(), whole.size()) << "chunk " << chunk;
    EXPECT_LE(MaxAbsDiff(chunked.data(), whole.data(), whole.size()), kSelfTolerance)
        << "chunk " << chunk;
  }
}

TEST_P(GoldenTest, SequenceInRaggedBatchEqualsItAlone) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const size_t count = ref_.batch_prompts.size();
  std::vector<std::vector<float>> alone;
  for (const auto& prompt : ref_.batch_prompts) {
    std::vector<float> l = ChunkedLogits(engine.get(), prompt, prompt.size());
    alone.emplace_back(l.end() - ref_.vocab, l.end());
  }
  // Step 1: every prompt but its last token, in one batch. Step 2: the last tokens, mixed with
  // a second prefill of the longest prompt on a fresh sequence, so decode and prefill rows
  // share a step.
  std::vector<SequenceId> seqs;
  std::vector<StepItem> items;
  for (size_t i = 0; i < count; ++i) {
    auto seq = engine->AddSequence();
    ASSERT_TRUE(seq.ok()) << seq.status();
    seqs.push_back(*seq);
    const auto& p = ref_.batch_prompts[i];
    if (p.size() > 1) {
      items.push_back(
          StepItem{*seq, absl::MakeConstSpan(p.data(), p.size() - 1), LogitsRows::kNone});
    }
  }
  ASSERT_TRUE(engine->Step(items).ok());
  items.clear();
  auto extra = engine->AddSequence();
  ASSERT_TRUE(extra.ok());
  const auto& longest = ref_.batch_prompts.back();
  items.push_back(StepItem{*extra, absl::MakeConstSpan(longest), LogitsRows::kLast});
  for (size_t i = 0; i < count; ++i) {
    const auto& p = ref_.batch_prompts[i];
    items.push_back(StepItem{seqs[i], absl::MakeConstSpan(&p.back(), 1), LogitsRows::kLast});
  }
  auto out = engine->Step(items);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LE(MaxAbsDiff(out->Last(0).data(), alone.back().data(), ref_.vocab), kSelfTolerance);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_LE(MaxAbsDiff(out->Last(i + 1).data(), alone[i].data(), ref_.vocab), kSelfTolerance)
        << "prompt " << i;
    EXPECT_LE(MaxAbsDiff(out->Last(i + 1).data(), ref_.batch_last_logits[i].data(), ref_.vocab),
              kReferenceTolerance)
        << "prompt " << i;
  }
}

TEST_P(GoldenTest, Bf16WeightsMatchTransformersWithRoundedWeights) {
  auto engine = MakeEngine(DType::kBF16);
  ASSERT_NE(engine, nullptr);
  std::vector<float> logits = ChunkedLogits(engine.get(), ref_.prompt, ref_.prompt.size());
  ASSERT_EQ(logits.size(), ref_.logits_bf16w.size());
  EXPECT_LE(MaxAbsDiff(logits.data(), ref_.logits_bf16w.data(), logits.size()), kBf16Tolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, GoldenTest,
    ::testing::Combine(::testing::Values("jamba_moe_gqa", "jamba_auto_dtrank", "jamba_dense",
                                         "mamba", "falcon_mamba", "mixtral"),
                       ::testing::Values("cpu", "cuda")),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace jamba
