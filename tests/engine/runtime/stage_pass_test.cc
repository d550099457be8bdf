// A Stage's forward in steps (Begin / Advance / Finish): several batches of disjoint sequences
// open at once, advanced in turn where their MoE layers wait for experts held elsewhere, must
// compute exactly what one Forward of each computes - the property a layer worker's
// micro-batches and its batches in flight rely on - and the bookkeeping of busy sequences.
#include <cstring>
#include <memory>
#include <vector>

#include "engine/runtime/stage.h"
#include "gtest/gtest.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

constexpr char kModel[] = "jamba_moe_gqa";

// `n` token ids in [0, vocab), different per salt.
std::vector<int32_t> TestPrompt(int64_t n, int64_t vocab, uint32_t salt) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t x = 2654435761u * (salt + 1);
  for (int32_t& id : ids) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab));
  }
  return ids;
}

// Computes experts with an experts-only shard in this process, as an expert worker would.
class LocalExperts final : public ExpertDispatcher {
 public:
  LocalExperts(Backend* backend, std::unique_ptr<Model> experts)
      : backend_(backend), experts_(std::move(experts)), ws_(backend) {}
  absl::Status Compute(int64_t layer, absl::Span<const ExpertWork> work) override {
    const ModelConfig& c = experts_->config();
    BatchLayout layout;
    ForwardContext ctx{backend_, &layout, &ws_, &c};
    for (const ExpertWork& w : work) {
      ws_.Reset();
      Tensor x = ws_.Take(DType::kF32, {w.rows, c.hidden_size});
      Tensor y = ws_.Take(DType::kF32, {w.rows, c.hidden_size});
      if (absl::Status s = backend_->Upload(w.x, w.rows * c.hidden_size * 4, x); !s.ok()) return s;
      experts_->ExpertForward(ctx, layer, w.expert, x, y);
      if (absl::Status s = backend_->Download(y, w.y); !s.ok()) return s;
    }
    ++calls_;
    return absl::OkStatus();
  }
  int calls() const { return calls_; }

 private:
  Backend* backend_;
  std::unique_ptr<Model> experts_;
  Workspace ws_;
  int calls_ = 0;
};

class StagePassTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = CreateCpuBackend();
    LoadOptions experts_only;
    experts_only.shard.experts_only = true;
    auto experts = Model::Load(ModelFixtureDir(kModel), experts_only, backend_.get());
    ASSERT_TRUE(experts.ok()) << experts.status();
    experts_ = std::make_unique<LocalExperts>(backend_.get(), *std::move(experts));
    stage_ = MakeStage(/*routers_only=*/true);
    reference_ = MakeStage(/*routers_only=*/false);
  }

  std::unique_ptr<Stage> MakeStage(bool routers_only) {
    LoadOptions load;
    if (routers_only) load.shard.want_expert = [](int64_t, int64_t) { return false; };
    auto model = Model::Load(ModelFixtureDir(kModel), load, backend_.get());
    EXPECT_TRUE(model.ok()) << model.status();
    StageOptions options;
    options.experts = routers_only ? experts_.get() : nullptr;
    auto stage = Stage::Create(*std::move(model), options, backend_.get());
    EXPECT_TRUE(stage.ok()) << stage.status();
    return *std::move(stage);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LocalExperts> experts_;
  std::unique_ptr<Stage> stage_;      // routers only; experts through experts_
  std::unique_ptr<Stage> reference_;  // every expert held, one Forward per batch
};

TEST_F(StagePassTest, InterleavedPassesComputeWhatForwardComputes) {
  const int64_t vocab = stage_->config().vocab_size;
  // Two batches of disjoint sequences: prefill, then decode, advanced in turn.
  const std::vector<SequenceId> a_ids = {1, 2}, b_ids = {3};
  for (Stage* s : {stage_.get(), reference_.get()}) {
    ASSERT_TRUE(s->AddSequences(a_ids).ok());
    ASSERT_TRUE(s->AddSequences(b_ids).ok());
  }
  const std::vector<int32_t> a_tokens = TestPrompt(11, vocab, 1);  // 5 for seq 1, 6 for seq 2
  const std::vector<int32_t> b_tokens = TestPrompt(9, vocab, 2);
  const std::vector<StageItem> a = {{1, 5, 0, LogitsRows::kAll}, {2, 6, 0, LogitsRows::kLast}};
  const std::vector<StageItem> b = {{3, 9, 0, LogitsRows::kAll}};
  StageInput a_in, b_in;
  a_in.token_ids = a_tokens;
  b_in.token_ids = b_tokens;

  auto pa = stage_->Begin(a, a_in);
  ASSERT_TRUE(pa.ok()) << pa.status();
  auto pb = stage_->Begin(b, b_in);
  ASSERT_TRUE(pb.ok()) << pb.status();
  // A sequence of an open pass cannot join another batch.
  const StageItem again{1, 1, 5, LogitsRows::kLast};
  StageInput one;
  const int32_t token = 3;
  one.token_ids = absl::MakeConstSpan(&token, 1);
  EXPECT_TRUE(
      absl::IsFailedPrecondition(stage_->Begin(absl::MakeConstSpan(&again, 1), one).status()));

  // Alternate: each Advance runs one pass up to its next expert wait.
  bool a_done = false, b_done = false;
  int waits = 0;
  while (!a_done || !b_done) {
    for (auto [pass, done] :
         {std::make_pair(pa->get(), &a_done), std::make_pair(pb->get(), &b_done)}) {
      if (*done) continue;
      auto r = stage_->Advance(*pass);
      ASSERT_TRUE(r.ok()) << r.status();
      if (*r) {
        *done = true;
      } else {
        ++waits;
        ASSERT_TRUE(experts_->Compute(pass->expert_layer(), pass->expert_work()).ok());
      }
    }
  }
  EXPECT_GE(waits, 2 * static_cast<int>(stage_->config().NumMoeLayers()));
  auto out_a = stage_->Finish(**pa);
  auto out_b = stage_->Finish(**pb);
  ASSERT_TRUE(out_a.ok() && out_b.ok());
  auto want_a = reference_->Forward(a, a_in);
  auto want_b = reference_->Forward(b, b_in);
  ASSERT_TRUE(want_a.ok() && want_b.ok());
  ASSERT_EQ(out_a->logits.logits.size(), want_a->logits.logits.size());
  ASSERT_EQ(out_b->logits.logits.size(), want_b->logits.logits.size());
  // Batch-invariant kernels: the very same floats.
  EXPECT_EQ(std::memcmp(out_a->logits.logits.data(), want_a->logits.logits.data(),
                        out_a->logits.logits.size() * sizeof(float)),
            0);
  EXPECT_EQ(std::memcmp(out_b->logits.logits.data(), want_b->logits.logits.data(),
                        out_b->logits.logits.size() * sizeof(float)),
            0);
  EXPECT_EQ(*stage_->SequenceLength(1), 5);
  EXPECT_EQ(*stage_->SequenceLength(3), 9);

  // A decode step of all three through one more pair of passes, the other way round.
  const std::vector<StageItem> a2 = {{1, 1, 5, LogitsRows::kLast}, {2, 1, 6, LogitsRows::kLast}};
  const std::vector<StageItem> b2 = {{3, 1, 9, LogitsRows::kLast}};
  const std::vector<int32_t> a2_tokens = {7, 8}, b2_tokens = {9};
  StageInput a2_in, b2_in;
  a2_in.token_ids = a2_tokens;
  b2_in.token_ids = b2_tokens;
  auto qb = stage_->Begin(b2, b2_in);
  auto qa = stage_->Begin(a2, a2_in);
  ASSERT_TRUE(qa.ok() && qb.ok());
  for (StagePass* pass : {qb->get(), qa->get()}) {
    while (true) {
      auto r = stage_->Advance(*pass);
      ASSERT_TRUE(r.ok()) << r.status();
      if (*r) break;
      ASSERT_TRUE(experts_->Compute(pass->expert_layer(), pass->expert_work()).ok());
    }
  }
  auto got_a2 = stage_->Finish(**qa);
  auto got_b2 = stage_->Finish(**qb);
  auto want_a2 = reference_->Forward(a2, a2_in);
  auto want_b2 = reference_->Forward(b2, b2_in);
  ASSERT_TRUE(got_a2.ok() && got_b2.ok() && want_a2.ok() && want_b2.ok());
  EXPECT_EQ(got_a2->logits.logits, want_a2->logits.logits);
  EXPECT_EQ(got_b2->logits.logits, want_b2->logits.logits);
}

TEST_F(StagePassTest, ReleasingABusySequenceFreesItWhenItsPassEnds) {
  const std::vector<SequenceId> ids = {5};
  ASSERT_TRUE(stage_->AddSequences(ids).ok());
  const std::vector<int32_t> tokens = TestPrompt(6, stage_->config().vocab_size, 3);
  const StageItem item{5, 6, 0, LogitsRows::kLast};
  StageInput in;
  in.token_ids = tokens;
  auto pass = stage_->Begin(absl::MakeConstSpan(&item, 1), in);
  ASSERT_TRUE(pass.ok()) << pass.status();
  EXPECT_EQ(stage_->RemoveSequences(ids), 1);
  // Still holding its slot and blocks while the pass computes on them; unknown to new work.
  EXPECT_EQ(stage_->Stats().live_sequences, 1);
  EXPECT_TRUE(absl::IsNotFound(stage_->SequenceLength(5).status()));
  EXPECT_EQ(stage_->RemoveSequences(ids), 0);
  while (true) {
    auto r = stage_->Advance(**pass);
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r) break;
    ASSERT_TRUE(experts_->Compute((*pass)->expert_layer(), (*pass)->expert_work()).ok());
  }
  ASSERT_TRUE(stage_->Finish(**pass).ok());
  EXPECT_EQ(stage_->Stats().live_sequences, 0);
  EXPECT_EQ(stage_->Stats().kv_blocks_used, 0);
  EXPECT_EQ(stage_->Stats().mamba_slots_used, 0);
}

TEST_F(StagePassTest, AnAbortedPassLosesItsSequences) {
  const std::vector<SequenceId> ids = {8};
  ASSERT_TRUE(stage_->AddSequences(ids).ok());
  const std::vector<int32_t> tokens = TestPrompt(4, stage_->config().vocab_size, 4);
  const StageItem item{8, 4, 0, LogitsRows::kLast};
  StageInput in;
  in.token_ids = tokens;
  auto pass = stage_->Begin(absl::MakeConstSpan(&item, 1), in);
  ASSERT_TRUE(pass.ok());
  auto r = stage_->Advance(**pass);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(*r) << "the model's first MoE layer waits for experts";
  stage_->Abort(**pass);  // the expert workers failed
  const StageItem next{8, 1, -1, LogitsRows::kLast};
  const int32_t t = 1;
  StageInput one;
  one.token_ids = absl::MakeConstSpan(&t, 1);
  EXPECT_TRUE(
      absl::IsFailedPrecondition(stage_->Begin(absl::MakeConstSpan(&next, 1), one).status()));
  EXPECT_EQ(stage_->RemoveSequences(ids), 1);
  EXPECT_EQ(stage_->Stats().live_sequences, 0);
}

}  // namespace
}  // namespace jamba

namespace jamba {
namespace {

// Lifetime reservations: what several gateways sharing a stage rely on.
TEST(StageReservationTest, ReservationsBoundTheCacheAndEndWithTheSequence) {
  auto backend = CreateCpuBackend();
  auto model = Model::Load(ModelFixtureDir("jamba_moe_gqa"), LoadOptions{}, backend.get());
  ASSERT_TRUE(model.ok()) << model.status();
  StageOptions options;
  options.kv_cache_tokens = 64;  // 4 blocks of 16
  auto stage = Stage::Create(*std::move(model), options, backend.get());
  ASSERT_TRUE(stage.ok()) << stage.status();
  Stage& s = **stage;
  const std::vector<SequenceId> ab = {1, 2};
  const std::vector<int64_t> two_blocks_each = {17, 32};
  ASSERT_TRUE(s.AddSequences(ab, two_blocks_each).ok());
  EXPECT_EQ(s.Stats().kv_blocks_reserved, 4);
  // Nothing left to reserve, however little: refused, all or nothing.
  const std::vector<SequenceId> c = {3};
  const std::vector<int64_t> one = {1};
  EXPECT_TRUE(absl::IsResourceExhausted(s.AddSequences(c, one)));
  EXPECT_EQ(s.Stats().live_sequences, 2);
  // Without a reservation a sequence is still admitted (the single-process engine's way).
  EXPECT_TRUE(s.AddSequences(c).ok());
  EXPECT_EQ(s.RemoveSequences(c), 1);
  // Bad reservations are refused by value.
  const std::vector<int64_t> negative = {-1};
  EXPECT_TRUE(absl::IsInvalidArgument(s.AddSequences(c, negative)));
  const std::vector<int64_t> too_many = {1, 1};
  EXPECT_TRUE(absl::IsInvalidArgument(s.AddSequences(c, too_many)));
  // A removed sequence's reservation is free again.
  EXPECT_EQ(s.RemoveSequences({1}), 1);
  EXPECT_EQ(s.Stats().kv_blocks_reserved, 2);
  EXPECT_TRUE(s.AddSequences(c, std::vector<int64_t>{20}).ok());
  EXPECT_EQ(s.Stats().kv_blocks_reserved, 4);
  // A capacity refusal never hides a wrong request: a live id is AlreadyExists even with no
  // room left to reserve.
  EXPECT_TRUE(absl::IsAlreadyExists(s.AddSequences(c, one)));

  // An unreserved sequence may not take blocks promised to a reservation: every block is
  // promised to 2 and 3, so 4's first token is refused while 2 and 3 still fit theirs.
  const std::vector<SequenceId> d = {4};
  ASSERT_TRUE(s.AddSequences(d).ok());
  const std::vector<int32_t> tokens = TestPrompt(17, s.config().vocab_size, 9);
  StageInput in;
  in.token_ids = absl::MakeConstSpan(tokens.data(), 1);
  const StageItem unreserved{4, 1, 0, LogitsRows::kLast};
  EXPECT_TRUE(absl::IsResourceExhausted(s.Begin(absl::MakeConstSpan(&unreserved, 1), in).status()));
  // 2 reserved 32 positions: 17 tokens take both its blocks, all from its own reservation.
  StageInput in2;
  in2.token_ids = tokens;
  const StageItem reserved{2, 17, 0, LogitsRows::kNone};
  auto pass = s.Begin(absl::MakeConstSpan(&reserved, 1), in2);
  ASSERT_TRUE(pass.ok()) << pass.status();
  s.Abort(**pass);
}

}  // namespace
}  // namespace jamba
