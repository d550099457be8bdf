// Engine contract: validation before any state change, capacity accounting, sequence
// lifecycle. Uses the jamba_moe_gqa fixture (Mamba + attention + MoE layers).
#include "engine/runtime/engine.h"

#include <cmath>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = CreateCpuBackend();
    auto ref = LoadModelReference("jamba_moe_gqa");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = *std::move(ref);
  }

  std::unique_ptr<Engine> Make(EngineOptions options) {
    auto engine = Engine::Create(ModelFixtureDir("jamba_moe_gqa"), options, backend_.get());
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  // Logits of the last prompt token of a fresh sequence.
  std::vector<float> LastLogits(Engine* engine, const std::vector<int32_t>& ids) {
    auto seq = engine->AddSequence();
    EXPECT_TRUE(seq.ok());
    StepItem item{*seq, absl::MakeConstSpan(ids), LogitsRows::kLast};
    auto out = engine->Step(absl::MakeConstSpan(&item, 1));
    EXPECT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(engine->RemoveSequence(*seq).ok());
    return out.ok() ? out->logits : std::vector<float>();
  }

  std::unique_ptr<Backend> backend_;
  ModelReference ref_;
};

TEST_F(EngineTest, BadItemsFailTheStepAndChangeNothing) {
  auto engine = Make({});
  ASSERT_NE(engine, nullptr);
  auto a = engine->AddSequence();
  auto b = engine->AddSequence();
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<int32_t> good = {1, 2, 3};
  const std::vector<int32_t> bad_id = {1, 256};
  const std::vector<int32_t> negative = {-1};
  const std::vector<int32_t> empty;

  auto step = [&](std::vector<StepItem> items) { return engine->Step(items).status(); };
  absl::Status s = step({{*a, good}, {*b, bad_id}});
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(std::string(s.message()), HasSubstr("token id 256"));
  EXPECT_TRUE(absl::IsInvalidArgument(step({{*a, negative}})));
  EXPECT_TRUE(absl::IsInvalidArgument(step({{*a, empty}})));
  EXPECT_TRUE(absl::IsInvalidArgument(step({{*a, good}, {*a, good}})));
  EXPECT_TRUE(absl::IsNotFound(step({{*a, good}, {12345, good}})));
  EXPECT_TRUE(absl::IsInvalidArgument(step({})));
  // Sampling parameters out of range, for a token sampled on the device.
  for (RowSampling bad :
       {RowSampling{1.0, 1.0f}, RowSampling{-0.1, 1.0f}, RowSampling{0.5, -1.0f},
        RowSampling{0.5, NAN}, RowSampling{0.5, 1.0f, -1}, RowSampling{0.5, 1.0f, 0, 0.0f},
        RowSampling{0.5, 1.0f, 0, 1.5f}, RowSampling{0.5, 1.0f, 0, 1.0f, 1.0f}}) {
    s = step({{*a, good}, {*b, good, LogitsRows::kLastToken, bad}});
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("sampling out of range"));
  }
  // Nothing was absorbed by the failed steps: `a` still behaves as a fresh sequence.
  EXPECT_EQ(*engine->SequenceLength(*a), 0);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  StepItem item{*a, absl::MakeConstSpan(ref_.prompt), LogitsRows::kAll};
  auto out = engine->Step(absl::MakeConstSpan(&item, 1));
  ASSERT_TRUE(out.ok());
  EXPECT_LE(MaxAbsDiff(out->logits.data(), ref_.logits.data(), ref_.logits.size()), 1e-4);
}

TEST_F(EngineTest, ContextLimitIsOutOfRange) {
  EngineOptions options;
  options.max_context = 8;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  auto seq = engine->AddSequence();
  ASSERT_TRUE(seq.ok());
  std::vector<int32_t> six(6, 5), three(3, 5);
  StepItem first{*seq, six, LogitsRows::kNone};
  ASSERT_TRUE(engine->Step(absl::MakeConstSpan(&first, 1)).ok());
  StepItem over{*seq, three, LogitsRows::kNone};
  absl::Status s = engine->Step(absl::MakeConstSpan(&over, 1)).status();
  EXPECT_TRUE(absl::IsOutOfRange(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("context limit 8"));
  EXPECT_EQ(*engine->SequenceLength(*seq), 6);
}

TEST_F(EngineTest, KvExhaustionIsAllOrNothingAndFreedOnRemove) {
  EngineOptions options;
  options.kv_block_size = 4;
  options.kv_cache_tokens = 16;  // 4 blocks
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Stats().kv_blocks_total, 4);
  auto a = engine->AddSequence();
  auto b = engine->AddSequence();
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<int32_t> nine(9, 7), eight(8, 7);
  StepItem first{*a, nine, LogitsRows::kNone};  // 3 blocks
  ASSERT_TRUE(engine->Step(absl::MakeConstSpan(&first, 1)).ok());
  EXPECT_EQ(engine->Stats().kv_blocks_used, 3);
  // b needs 2 blocks and a needs none more: the batch does not fit, nothing is reserved.
  std::vector<StepItem> both = {{*a, absl::MakeConstSpan(nine.data(), 1)}, {*b, eight}};
  absl::Status s = engine->Step(both).status();
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_EQ(engine->Stats().kv_blocks_used, 3);
  EXPECT_EQ(*engine->SequenceLength(*a), 9);
  ASSERT_TRUE(engine->RemoveSequence(*a).ok());
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  // Now b fits, and computes what a fresh sequence computes.
  StepItem only_b{*b, eight, LogitsRows::kLast};
  auto out = engine->Step(absl::MakeConstSpan(&only_b, 1));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(engine->Stats().kv_blocks_used, 2);
}

TEST_F(EngineTest, SequenceSlotsAreLimitedAndReused) {
  EngineOptions options;
  options.max_sequences = 2;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  auto a = engine->AddSequence();
  auto b = engine->AddSequence();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(engine->AddSequence().status()));
  EXPECT_EQ(engine->Stats().mamba_slots_used, 2);
  // A removed sequence's slot holds stale state; its next owner must not see it.
  std::vector<int32_t> ids(ref_.prompt.begin(), ref_.prompt.begin() + 10);
  StepItem item{*a, ids, LogitsRows::kNone};
  ASSERT_TRUE(engine->Step(absl::MakeConstSpan(&item, 1)).ok());
  ASSERT_TRUE(engine->RemoveSequence(*a).ok());
  EXPECT_TRUE(absl::IsNotFound(engine->RemoveSequence(*a)));
  ASSERT_TRUE(engine->RemoveSequence(*b).ok());
  std::vector<float> logits = LastLogits(engine.get(), ref_.prompt);
  const int64_t v = ref_.vocab, t = static_cast<int64_t>(ref_.prompt.size());
  ASSERT_EQ(static_cast<int64_t>(logits.size()), v);
  EXPECT_LE(MaxAbsDiff(logits.data(), ref_.logits.data() + (t - 1) * v, v), 1e-4);
  EXPECT_EQ(engine->Stats().live_sequences, 0);
}

TEST_F(EngineTest, BatchInvariantBackendGivesBitIdenticalRows) {
  // The default CPU backend promises bit-identical logits for a sequence alone or batched.
  auto engine = Make({});
  ASSERT_NE(engine, nullptr);
  const std::vector<float> alone = LastLogits(engine.get(), ref_.batch_prompts[2]);
  std::vector<SequenceId> seqs;
  std::vector<StepItem> items;
  for (const auto& p : ref_.batch_prompts) {
    auto seq = engine->AddSequence();
    ASSERT_TRUE(seq.ok());
    seqs.push_back(*seq);
    items.push_back(StepItem{*seq, absl::MakeConstSpan(p), LogitsRows::kLast});
  }
  auto out = engine->Step(items);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(MaxAbsDiff(out->Last(2).data(), alone.data(), alone.size()), 0.0);
}

TEST_F(EngineTest, RejectsBadOptions) {
  EngineOptions options;
  options.max_sequences = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(
      Engine::Create(ModelFixtureDir("jamba_moe_gqa"), options, backend_.get()).status()));
  options.max_sequences = 1;
  options.kv_block_size = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(
      Engine::Create(ModelFixtureDir("jamba_moe_gqa"), options, backend_.get()).status()));
}

}  // namespace
}  // namespace jamba
