// The gateway's continuous-batching scheduler: requests joining a running batch, back-pressure
// from a slow reader, a full queue, and cancellation (client cancel, deadline) freeing every
// stage's state.
//
// Timing-sensitive cases run the scheduler over a GatedExecutor: the test decides how many
// forward steps may run, so "B joins while A is still running" or "one running, one queued"
// hold by construction, not by racing the clock. The cancellation cases run the whole
// in-process cluster, whose layer workers report their pool counters.
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/model/model.h"
#include "gateway/gateway.h"
#include "gateway/jamba_service.h"
#include "gateway/local_executor.h"
#include "gateway/scheduler.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "rpc/channel.h"
#include "rpc/server.h"
#include "tests/engine/runtime/reference_fixture.h"
#include "tests/gateway/cluster_test_util.h"
#include "tests/gateway/in_process_cluster.h"

namespace jamba {
namespace {

constexpr char kModel[] = "jamba_moe_gqa";           // attention + Mamba + MoE layers
constexpr absl::Duration kWait = absl::Seconds(30);  // bound of every wait for progress

// Passes the state calls to `inner`; the test executors below differ in how they forward.
class ForwardingExecutor : public SequenceExecutor {
 public:
  explicit ForwardingExecutor(SequenceExecutor* inner) : inner_(inner) {}
  ExecutorLimits limits() const override { return inner_->limits(); }
  absl::Status Create(absl::Span<const SequenceId> ids,
                      absl::Span<const int64_t> reserve_tokens = {}) override {
    return inner_->Create(ids, reserve_tokens);
  }
  absl::Status Release(absl::Span<const SequenceId> ids) override { return inner_->Release(ids); }

 protected:
  SequenceExecutor* const inner_;
};

// Records every forward's items, and holds the scheduler thread before a forward until the
// test allows it.
class GatedExecutor final : public ForwardingExecutor {
 public:
  using ForwardingExecutor::ForwardingExecutor;
  absl::StatusOr<StepOutput> Forward(absl::Span<const StageItem> items,
                                     absl::Span<const int32_t> token_ids) override {
    {
      absl::MutexLock lock(&mu_);
      auto allowed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return static_cast<int64_t>(log_.size()) < allowed_;
      };
      mu_.Await(absl::Condition(&allowed));
      log_.emplace_back(items.begin(), items.end());
    }
    return inner_->Forward(items, token_ids);
  }

  // No forward starts until Allow/Open.
  void Hold() {
    absl::MutexLock lock(&mu_);
    allowed_ = static_cast<int64_t>(log_.size());
  }
  // `n` more forwards may start.
  void Allow(int64_t n) {
    absl::MutexLock lock(&mu_);
    allowed_ += n;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    allowed_ = std::numeric_limits<int64_t>::max();
  }
  std::vector<std::vector<StageItem>> log() const {
    absl::MutexLock lock(&mu_);
    return log_;
  }

 private:
  mutable absl::Mutex mu_;
  int64_t allowed_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<int64_t>::max();
  std::vector<std::vector<StageItem>> log_ ABSL_GUARDED_BY(mu_);  // items of each forward
};

// Forwards asynchronously: every ForwardAsync is held (the scheduler sees it in flight) until
// the test releases it, in any order; a released batch runs on `inner` and its result goes
// back to the scheduler from the releasing thread.
class HeldAsyncExecutor final : public ForwardingExecutor {
 public:
  using ForwardingExecutor::ForwardingExecutor;
  absl::StatusOr<StepOutput> Forward(absl::Span<const StageItem> items,
                                     absl::Span<const int32_t> token_ids) override {
    return inner_->Forward(items, token_ids);
  }
  void ForwardAsync(std::vector<StageItem> items, std::vector<int32_t> token_ids,
                    ForwardDone done) override {
    absl::MutexLock lock(&mu_);
    log_.push_back(items);
    held_.push_back(Held{std::move(items), std::move(token_ids), std::move(done)});
  }

  // Waits (bounded) until `n` forwards are held.
  bool WaitHeld(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
  }
  size_t held() const {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  std::vector<StageItem> held_items(size_t i) const {
    absl::MutexLock lock(&mu_);
    return held_.at(i).items;
  }
  // Runs held forward `i` and reports it to the scheduler.
  void Run(size_t i) {
    Held h;
    {
      absl::MutexLock lock(&mu_);
      h = std::move(held_.at(i));
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    h.done(inner_->Forward(h.items, h.token_ids));
  }
  // Runs held forwards as they come, from this thread, until `stop` returns true (bounded).
  template <typename Stop>
  void RunUntil(Stop stop) {
    const absl::Time deadline = absl::Now() + kWait;
    while (!stop() && absl::Now() < deadline) {
      if (held() > 0) {
        Run(0);
      } else {
        absl::SleepFor(absl::Microseconds(200));
      }
    }
  }
  std::vector<std::vector<StageItem>> log() const {
    absl::MutexLock lock(&mu_);
    return log_;
  }

 private:
  struct Held {
    std::vector<StageItem> items;
    std::vector<int32_t> token_ids;
    ForwardDone done;
  };
  mutable absl::Mutex mu_;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<StageItem>> log_ ABSL_GUARDED_BY(mu_);
};

// Takes updates until at least `want` events were collected or the stream is done (bounded).
struct Collected {
  std::vector<int32_t> tokens;
  bool done = false;
  absl::Status status;
  FinishReason finish_reason = FinishReason::kNone;
  int64_t completion_tokens = -1;
};

void TakeUntil(RequestStream* stream, size_t want, Collected* c) {
  const absl::Time deadline = absl::Now() + kWait;
  while (!c->done && c->tokens.size() < want && absl::Now() < deadline) {
    StreamUpdate u;
    if (!stream->Take(absl::Milliseconds(100), &u)) continue;
    for (const TokenEvent& e : u.events) c->tokens.push_back(e.token);
    if (u.done) {
      c->done = true;
      c->status = u.status;
      c->finish_reason = u.finish_reason;
      c->completion_tokens = u.completion_tokens;
    }
  }
}

void TakeAll(RequestStream* stream, Collected* c) {
  TakeUntil(stream, std::numeric_limits<size_t>::max(), c);
}

// The model in this process: LocalExecutor behind a GatedExecutor, a scheduler over it, and
// an Engine for the single-process reference.
class LocalSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = CreateCpuBackend();
    auto model = Model::Load(ModelFixtureDir(kModel), LoadOptions{}, backend.get());
    ASSERT_TRUE(model.ok()) << model.status();
    config_ = (*model)->config();
    fingerprint_ = (*model)->fingerprint();
    auto stage = Stage::Create(*std::move(model), StageOptions{}, backend.get());
    ASSERT_TRUE(stage.ok()) << stage.status();
    local_ = std::make_unique<LocalExecutor>(std::move(backend), *std::move(stage));
    gate_ = std::make_unique<GatedExecutor>(local_.get());
    ref_backend_ = CreateCpuBackend();
    auto engine = Engine::Create(ModelFixtureDir(kModel), EngineOptions{}, ref_backend_.get());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }
  void TearDown() override {
    if (gate_) gate_->Open();  // never leave the scheduler thread stuck at the gate
    server_.reset();
    service_.reset();
    scheduler_.reset();
  }

  void StartScheduler(const SchedulerOptions& options) {
    scheduler_ = std::make_unique<Scheduler>(gate_.get(), options);
  }

  // The public API over the scheduler, as a gateway in local mode serves it.
  void StartService() {
    service_ = std::make_unique<JambaService>(&config_, fingerprint_, nullptr, scheduler_.get(),
                                              std::vector<const Pipeline*>{},
                                              local_->limits().max_context);
    auto server = StartServer("127.0.0.1:0", {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->server);
    stub_ = v1::Jamba::NewStub(MakeInternalChannel(absl::StrCat("127.0.0.1:", server->port)));
  }

  std::unique_ptr<Completion> MakeCompletion(const std::vector<int32_t>& prompt,
                                             const SamplingParams& params) {
    auto c = Completion::Create(config_, nullptr, prompt, params, local_->limits().max_context);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::vector<int32_t> Solo(const std::vector<int32_t>& prompt, const SamplingParams& params) {
    auto r = SoloGenerate(engine_.get(), prompt, params);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->token_ids : std::vector<int32_t>();
  }

  // Polls `pred` (a bounded wait for the scheduler thread to reach a state).
  template <typename Pred>
  bool WaitFor(Pred pred) {
    const absl::Time deadline = absl::Now() + kWait;
    while (!pred()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  ModelConfig config_;
  std::string fingerprint_;
  std::unique_ptr<LocalExecutor> local_;
  std::unique_ptr<GatedExecutor> gate_;
  std::unique_ptr<Backend> ref_backend_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JambaService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Jamba::Stub> stub_;
};

// Index of the item of sequence `id` in a forward's items, or -1.
int Find(const std::vector<StageItem>& items, SequenceId id) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].sequence == id) return static_cast<int>(i);
  }
  return -1;
}

// Pipeline depth 3: three batches in flight on disjoint sequences, none launched beyond the
// depth, decoders spread over the batches, results taken in any order of return, and every
// stream still the single process's.
TEST_F(LocalSchedulerTest, DepthKeepsBatchesInFlightOnDisjointSequences) {
  HeldAsyncExecutor async(local_.get());
  SchedulerOptions options;
  options.pipeline_depth = 3;
  options.prefill_chunk = 4;
  options.max_running = 6;
  options.max_tokens_per_step = 8;  // two 4-token chunks per batch: prompts spread over batches
  scheduler_ = std::make_unique<Scheduler>(&async, options);
  EXPECT_EQ(scheduler_->Stats().pipeline_depth, 3);
  const int n = 6;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RequestStream>> streams;
  const SamplingParams params = TestSampling(10);
  for (int i = 0; i < n; ++i) {
    prompts.push_back(TestPrompt(4 + i, config_.vocab_size, 40 + i));
    auto s = scheduler_->Submit(MakeCompletion(prompts.back(), params));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  ASSERT_TRUE(async.WaitHeld(3));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(async.held(), 3u) << "more batches in flight than the depth";
  EXPECT_EQ(scheduler_->Stats().in_flight, 3);
  std::set<SequenceId> seen;
  for (size_t b = 0; b < 3; ++b) {
    for (const StageItem& item : async.held_items(b)) {
      EXPECT_TRUE(seen.insert(item.sequence).second) << "sequence in two batches in flight";
    }
  }
  // The last-launched batch returns first; the scheduler launches the next one at once.
  async.Run(2);
  ASSERT_TRUE(async.WaitHeld(3));
  // Then everything runs as it comes, in arrival order, from this thread.
  async.RunUntil([&] { return scheduler_->Stats().finished == n; });
  for (int i = 0; i < n; ++i) {
    Collected got;
    TakeAll(streams[i].get(), &got);
    ASSERT_TRUE(got.done && got.status.ok()) << i << ": " << got.status;
    EXPECT_EQ(got.tokens, Solo(prompts[i], params)) << "prompt " << i;
  }
  // Over the whole run no batch held a sequence twice, none held a sequence in flight
  // elsewhere (checked above for the first three), and once all six decoded, a batch took at
  // most ceil(6 / 3) = 2 decoders.
  int64_t max_decodes = 0;
  for (const std::vector<StageItem>& batch : async.log()) {
    std::set<SequenceId> ids;
    int64_t decodes = 0;
    for (const StageItem& item : batch) {
      EXPECT_TRUE(ids.insert(item.sequence).second);
      decodes += item.n_tokens == 1 && item.n_past >= 4 + 5;  // past every prompt
    }
    max_decodes = std::max(max_decodes, decodes);
  }
  EXPECT_LE(max_decodes, 2);
  EXPECT_EQ(scheduler_->Stats().max_in_flight, 3);
  EXPECT_TRUE(WaitFor([&] { return local_->Stats().live_sequences == 0; }));
}

// Two pipelines (data parallel): each request is placed on the one with the most free KV
// blocks (then the fewest running), a batch only ever holds its own pipeline's sequences, a
// request that fits no pipeline now waits for room, and the tokens are the single process's.
TEST_F(LocalSchedulerTest, PipelinesShareTheLoadByFreeKvBlocks) {
  auto backend = CreateCpuBackend();
  auto model = Model::Load(ModelFixtureDir(kModel), LoadOptions{}, backend.get());
  ASSERT_TRUE(model.ok()) << model.status();
  StageOptions small;
  small.kv_cache_tokens = 64;  // 4 blocks of 16: room for one 30-token request
  auto stage = Stage::Create(*std::move(model), small, backend.get());
  ASSERT_TRUE(stage.ok()) << stage.status();
  LocalExecutor second(std::move(backend), *std::move(stage));
  ASSERT_EQ(second.limits().kv_blocks, 4);
  const int64_t first_blocks = local_->limits().kv_blocks;
  ASSERT_GT(first_blocks, 8);
  HeldAsyncExecutor a(local_.get()), b(&second);
  SchedulerOptions options;
  options.pipeline_depth = 1;
  scheduler_ = std::make_unique<Scheduler>(std::vector<SequenceExecutor*>{&a, &b}, options);

  const SamplingParams params = TestSampling(20);  // prompt 10 + 20 = 30 tokens: 2 blocks
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RequestStream>> streams;
  auto submit = [&](uint64_t salt) {
    prompts.push_back(TestPrompt(10, config_.vocab_size, salt));
    auto s = scheduler_->Submit(MakeCompletion(prompts.back(), params));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  };
  submit(81);
  ASSERT_TRUE(a.WaitHeld(1));  // the first pipeline has more free blocks
  EXPECT_EQ(scheduler_->Stats().pipelines.at(0).running, 1);
  EXPECT_EQ(scheduler_->Stats().pipelines.at(1).running, 0);
  submit(82);
  submit(83);
  // Still more free blocks on the first: both go there too (its batch is in flight, so they
  // wait for it there).
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().pipelines.at(0).running == 3; }));
  EXPECT_EQ(b.held(), 0u);
  // Run everything to the end; every batch held only its own pipeline's sequences.
  auto ids_of = [](const HeldAsyncExecutor& e) {
    std::set<SequenceId> ids;
    for (const auto& batch : e.log()) {
      for (const StageItem& item : batch) ids.insert(item.sequence);
    }
    return ids;
  };
  const absl::Time deadline = absl::Now() + kWait;
  while (scheduler_->Stats().finished < 3 && absl::Now() < deadline) {
    if (a.held() > 0) a.Run(0);
    if (b.held() > 0) b.Run(0);
    absl::SleepFor(absl::Microseconds(100));
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    Collected got;
    TakeAll(streams[i].get(), &got);
    ASSERT_TRUE(got.done && got.status.ok()) << got.status;
    EXPECT_EQ(got.tokens, Solo(prompts[i], params));
  }
  EXPECT_EQ(ids_of(a).size(), 3u);
  EXPECT_TRUE(ids_of(b).empty());

  // Fill the first pipeline's cache with requests that hold it, then the next goes to the
  // second; one more fits neither and waits until one finishes.
  const int64_t per_request = 2;  // blocks
  const SamplingParams long_params = TestSampling(16 * static_cast<int32_t>(first_blocks) - 10);
  auto big = scheduler_->Submit(MakeCompletion(TestPrompt(10, config_.vocab_size, 90),
                                               long_params));  // all of the first's blocks
  ASSERT_TRUE(big.ok()) << big.status();
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().pipelines.at(0).running == 1; }));
  submit(91);
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().pipelines.at(1).running == 1; }));
  submit(92);
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().pipelines.at(1).running == 2; }));
  EXPECT_EQ(scheduler_->Stats().pipelines.at(1).kv_blocks_reserved, 2 * per_request);
  submit(93);  // neither has room: queued
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(scheduler_->Stats().queued, 1);
  (*big)->Cancel();
  const absl::Time deadline2 = absl::Now() + kWait;
  while (scheduler_->Stats().finished < 7 && absl::Now() < deadline2) {
    if (a.held() > 0) a.Run(0);
    if (b.held() > 0) b.Run(0);
    absl::SleepFor(absl::Microseconds(100));
  }
  EXPECT_EQ(scheduler_->Stats().finished, 7);
  for (size_t i = 3; i < streams.size(); ++i) {
    Collected got;
    TakeAll(streams[i].get(), &got);
    ASSERT_TRUE(got.done && got.status.ok()) << got.status;
    EXPECT_EQ(got.tokens, Solo(prompts[i], params));
  }
  EXPECT_TRUE(WaitFor([&] { return second.Stats().live_sequences == 0; }));
}

// A stream cancelled while its sequence is in a batch in flight ends Cancelled when the batch
// returns (its token is dropped), its state is freed, and the others finish exactly.
TEST_F(LocalSchedulerTest, CancelWhileInFlightEndsAtTheBatchsReturn) {
  HeldAsyncExecutor async(local_.get());
  SchedulerOptions options;
  options.pipeline_depth = 2;
  scheduler_ = std::make_unique<Scheduler>(&async, options);
  const SamplingParams params = TestSampling(8);
  const std::vector<int32_t> pa = TestPrompt(5, config_.vocab_size, 61);
  const std::vector<int32_t> pb = TestPrompt(6, config_.vocab_size, 62);
  auto a = scheduler_->Submit(MakeCompletion(pa, params));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(async.WaitHeld(1));
  auto b = scheduler_->Submit(MakeCompletion(pb, params));
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(async.WaitHeld(2));  // A's prefill and B's, in two batches
  (*a)->Cancel();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(scheduler_->Stats().finished, 0) << "cancelled while still in flight";
  async.RunUntil([&] { return scheduler_->Stats().finished == 2; });
  Collected got_a, got_b;
  TakeAll(a->get(), &got_a);
  TakeAll(b->get(), &got_b);
  ASSERT_TRUE(got_a.done);
  EXPECT_TRUE(absl::IsCancelled(got_a.status)) << got_a.status;
  EXPECT_TRUE(got_a.tokens.empty());
  ASSERT_TRUE(got_b.status.ok()) << got_b.status;
  EXPECT_EQ(got_b.tokens, Solo(pb, params));
  EXPECT_TRUE(WaitFor([&] { return local_->Stats().live_sequences == 0; }));
  EXPECT_EQ(scheduler_->Stats().kv_blocks_reserved, 0);
}

// Shutting down (SIGTERM's last step) with batches in flight: the scheduler launches nothing
// more, waits for them to return, then ends every stream with UNAVAILABLE and frees the state.
TEST_F(LocalSchedulerTest, ShutdownWaitsForBatchesInFlight) {
  HeldAsyncExecutor async(local_.get());
  SchedulerOptions options;
  options.pipeline_depth = 2;
  scheduler_ = std::make_unique<Scheduler>(&async, options);
  auto a =
      scheduler_->Submit(MakeCompletion(TestPrompt(5, config_.vocab_size, 71), TestSampling(50)));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(async.WaitHeld(1));
  std::atomic<bool> destroyed{false};
  std::thread stopper([&] {
    scheduler_.reset();
    destroyed = true;
  });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(destroyed) << "the scheduler went away with a batch in flight";
  async.Run(0);
  stopper.join();
  EXPECT_EQ(async.held(), 0u) << "a batch was launched while stopping";
  Collected got;
  TakeAll(a->get(), &got);
  ASSERT_TRUE(got.done);
  EXPECT_TRUE(absl::IsUnavailable(got.status)) << got.status;
  EXPECT_EQ(local_->Stats().live_sequences, 0);
}

TEST_F(LocalSchedulerTest, RequestArrivingMidStreamJoinsTheRunningBatch) {
  StartScheduler(SchedulerOptions{});
  const std::vector<int32_t> prompt_a = TestPrompt(6, config_.vocab_size, 1);
  const std::vector<int32_t> prompt_b = TestPrompt(9, config_.vocab_size, 2);
  const SamplingParams params_a = TestSampling(60), params_b = TestSampling(12);

  gate_->Hold();
  auto a = scheduler_->Submit(MakeCompletion(prompt_a, params_a));
  ASSERT_TRUE(a.ok()) << a.status();
  gate_->Allow(3);  // A's prefill and two decodes: three tokens
  Collected got_a, got_b;
  TakeUntil(a->get(), 3, &got_a);
  ASSERT_EQ(got_a.tokens.size(), 3u);
  ASSERT_FALSE(got_a.done);

  auto b = scheduler_->Submit(MakeCompletion(prompt_b, params_b));
  ASSERT_TRUE(b.ok()) << b.status();
  // The forward the scheduler is held at may have been built before B arrived; B's whole
  // prompt fits in the one after it.
  gate_->Allow(2);
  TakeUntil(b->get(), 1, &got_b);
  // One token, or two if B made it into the held forward already.
  ASSERT_GE(got_b.tokens.size(), 1u) << "B's first token did not arrive";
  ASSERT_LE(got_b.tokens.size(), 2u);
  ASSERT_FALSE(got_b.done);
  // A cannot have finished: only 5 of its 60 steps were allowed.
  TakeUntil(a->get(), got_a.tokens.size() + 1, &got_a);
  EXPECT_FALSE(got_a.done);
  EXPECT_LT(got_a.tokens.size(), 60u);

  gate_->Open();
  TakeAll(b->get(), &got_b);
  TakeAll(a->get(), &got_a);
  ASSERT_TRUE(got_a.done && got_b.done);
  ASSERT_TRUE(got_a.status.ok()) << got_a.status;
  ASSERT_TRUE(got_b.status.ok()) << got_b.status;
  EXPECT_EQ(got_a.tokens, Solo(prompt_a, params_a));
  EXPECT_EQ(got_b.tokens, Solo(prompt_b, params_b));
  EXPECT_EQ(got_a.finish_reason, FinishReason::kLength);
  EXPECT_EQ(got_b.finish_reason, FinishReason::kLength);
  EXPECT_EQ(got_a.completion_tokens, 60);
  EXPECT_EQ(got_b.completion_tokens, 12);

  // The step log: A and B decoded in the same forwards (one batch), B's prompt was absorbed
  // while A ran, and every row is accounted for in the scheduler's counters.
  const std::vector<std::vector<StageItem>> log = gate_->log();
  ASSERT_FALSE(log.empty());
  const SequenceId id_a = log[0][0].sequence;
  SequenceId id_b = -1;
  int64_t rows = 0, shared_decodes = 0, last_a = -1, first_b = -1;
  for (size_t s = 0; s < log.size(); ++s) {
    for (const StageItem& item : log[s]) {
      rows += item.n_tokens;
      if (item.sequence != id_a && id_b < 0) id_b = item.sequence;
    }
    const int ia = Find(log[s], id_a), ib = id_b < 0 ? -1 : Find(log[s], id_b);
    if (ia >= 0) last_a = static_cast<int64_t>(s);
    if (ib >= 0 && first_b < 0) first_b = static_cast<int64_t>(s);
    if (ia >= 0 && ib >= 0 && log[s][ia].n_tokens == 1 && log[s][ib].n_tokens == 1) {
      ++shared_decodes;
    }
  }
  ASSERT_GE(id_b, 0);
  EXPECT_LT(first_b, last_a);
  EXPECT_EQ(shared_decodes, 11);  // B's 11 decode steps all ran beside A's
  const SchedulerStats stats = scheduler_->Stats();
  EXPECT_EQ(stats.steps, static_cast<int64_t>(log.size()));
  EXPECT_EQ(stats.step_tokens, rows);
  // Rows: both prompts once, plus one row per decode (every generated token but the last).
  EXPECT_EQ(rows, static_cast<int64_t>(prompt_a.size() + prompt_b.size()) + 59 + 11);
  EXPECT_EQ(stats.generated_tokens, 72);
  EXPECT_EQ(stats.finished, 2);
  EXPECT_TRUE(WaitFor([&] {
    const SchedulerStats s = scheduler_->Stats();
    return s.running == 0 && s.queued == 0 && s.kv_blocks_reserved == 0;
  }));
  EXPECT_TRUE(WaitFor([&] { return local_->Stats().live_sequences == 0; }));
  EXPECT_EQ(local_->Stats().kv_blocks_used, 0);
  EXPECT_EQ(local_->Stats().mamba_slots_used, 0);
}

TEST_F(LocalSchedulerTest, UnreadStreamPausesWithABoundedBufferAndOthersComplete) {
  SchedulerOptions options;
  options.max_pending_tokens = 4;
  StartScheduler(options);
  const std::vector<int32_t> prompt_s = TestPrompt(7, config_.vocab_size, 3);
  const std::vector<int32_t> prompt_t = TestPrompt(11, config_.vocab_size, 4);
  const SamplingParams params_s = TestSampling(40), params_t = TestSampling(12);

  auto slow = scheduler_->Submit(MakeCompletion(prompt_s, params_s));
  ASSERT_TRUE(slow.ok()) << slow.status();
  auto other = scheduler_->Submit(MakeCompletion(prompt_t, params_t));
  ASSERT_TRUE(other.ok()) << other.status();
  // The other request runs to its end while nobody reads the slow one.
  Collected got_t;
  TakeAll(other->get(), &got_t);
  ASSERT_TRUE(got_t.done);
  ASSERT_TRUE(got_t.status.ok()) << got_t.status;
  EXPECT_EQ(got_t.tokens, Solo(prompt_t, params_t));

  // The slow sequence stops once max_pending_tokens wait unread, and stays there.
  ASSERT_TRUE(WaitFor([&] { return (*slow)->paused(); }));
  // Forwards that asked for the slow sequence's logits: one per token it produced.
  auto produced = [&] {
    const std::vector<std::vector<StageItem>> log = gate_->log();
    const SequenceId id = log.at(0).at(0).sequence;  // submitted first: first in the batch
    int64_t n = 0;
    for (const auto& step : log) {
      const int i = Find(step, id);
      if (i >= 0 && step[i].logits != LogitsRows::kNone) ++n;
    }
    return n;
  };
  EXPECT_EQ(produced(), 4);
  // The other one is retired at the end of its last step (just after its stream finished).
  EXPECT_TRUE(WaitFor([&] { return scheduler_->Stats().running == 1; }));

  Collected got_s;
  StreamUpdate first;
  ASSERT_TRUE((*slow)->Take(kWait, &first));
  EXPECT_EQ(first.events.size(), 4u);  // the whole buffer, never more than the bound
  for (const TokenEvent& e : first.events) got_s.tokens.push_back(e.token);
  TakeAll(slow->get(), &got_s);
  ASSERT_TRUE(got_s.done);
  ASSERT_TRUE(got_s.status.ok()) << got_s.status;
  EXPECT_EQ(got_s.tokens, Solo(prompt_s, params_s));
  EXPECT_EQ(got_s.completion_tokens, 40);
}

TEST_F(LocalSchedulerTest, FullQueueRejectsAtOnceWhileAdmittedRequestsComplete) {
  SchedulerOptions options;
  options.max_running = 1;
  options.max_queue = 1;
  StartScheduler(options);
  ASSERT_NO_FATAL_FAILURE(StartService());
  const std::vector<int32_t> prompt1 = TestPrompt(8, config_.vocab_size, 5);
  const std::vector<int32_t> prompt2 = TestPrompt(13, config_.vocab_size, 6);
  const SamplingParams params1 = TestSampling(30), params2 = TestSampling(10);

  gate_->Hold();  // request 1 is admitted, then held before its first forward
  StreamResult r1, r2;
  std::vector<std::thread> threads;
  auto join = absl::MakeCleanup([&] {
    gate_->Open();
    for (std::thread& t : threads) t.join();
  });
  threads.emplace_back([&] { r1 = RunGenerate(stub_.get(), IdsRequest(prompt1, params1), 30); });
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().running == 1; }));
  threads.emplace_back([&] { r2 = RunGenerate(stub_.get(), IdsRequest(prompt2, params2), 30); });
  ASSERT_TRUE(WaitFor([&] { return scheduler_->Stats().queued == 1; }));

  // Nothing has run (the gate is shut), so the rejection cannot have waited on anything.
  StreamResult r3 = RunGenerate(stub_.get(), IdsRequest(prompt2, params2));
  EXPECT_EQ(r3.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(r3.status.error_message(), ::testing::HasSubstr("queue is full"));
  EXPECT_TRUE(r3.token_ids.empty());
  EXPECT_EQ(scheduler_->Stats().rejected_queue_full, 1);
  EXPECT_TRUE(gate_->log().empty());

  std::move(join).Invoke();
  ASSERT_TRUE(r1.status.ok()) << r1.status.error_message();
  ASSERT_TRUE(r2.status.ok()) << r2.status.error_message();
  EXPECT_EQ(r1.token_ids, Solo(prompt1, params1));
  EXPECT_EQ(r2.token_ids, Solo(prompt2, params2));
  EXPECT_EQ(r1.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r2.finish_reason, v1::FINISH_REASON_LENGTH);
  // max_running 1: the two never shared a forward.
  for (const auto& step : gate_->log()) EXPECT_EQ(step.size(), 1u);
}

// ---- The in-process cluster: cancellation frees every layer worker's state. ---------------

class ClusterCancellationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions options;
    options.model_dir = ModelFixtureDir(kModel);
    options.layer_workers = 2;
    auto checkpoint = Checkpoint::Open(options.model_dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    options.expert_specs = DefaultExpertSpecs((*checkpoint)->config(), 4);
    auto cluster = InProcessCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  // A request that would run for thousands of steps: it is certainly still running when the
  // test cancels it.
  v1::GenerateRequest LongRequest() {
    return IdsRequest(TestPrompt(10, cluster_->config().vocab_size, 7), TestSampling(5000));
  }

  // Every stage holds the sequence's state while it streams.
  void ExpectStateHeld() {
    auto infos = cluster_->LayerShardInfos();
    ASSERT_TRUE(infos.ok()) << infos.status();
    int64_t kv = 0;
    for (const v1::ShardInfoResponse& info : *infos) {
      EXPECT_EQ(info.live_sequences(), 1);
      kv += info.kv_blocks_used();
      if (info.mamba_slots_total() > 0) {
        EXPECT_EQ(info.mamba_slots_used(), 1);
      }
    }
    EXPECT_GT(kv, 0);
  }

  void ExpectEverythingFreed() {
    absl::Status empty = cluster_->WaitForEmptyPools(kWait);
    EXPECT_TRUE(empty.ok()) << empty;
    const absl::Time deadline = absl::Now() + kWait;
    SchedulerStats s;
    while (true) {
      s = cluster_->gateway()->scheduler()->Stats();
      if ((s.running == 0 && s.kv_blocks_reserved == 0) || absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.queued, 0);
    EXPECT_EQ(s.kv_blocks_reserved, 0);
  }

  std::unique_ptr<InProcessCluster> cluster_;
};

TEST_F(ClusterCancellationTest, ClientCancelFreesStateOnEveryStage) {
  grpc::ClientContext ctx;
  auto reader = cluster_->stub()->Generate(&ctx, LongRequest());
  v1::GenerateChunk chunk;
  int tokens = 0;
  while (tokens < 3 && reader->Read(&chunk)) tokens += chunk.token_ids_size();
  ASSERT_GE(tokens, 3);
  ExpectStateHeld();
  ctx.TryCancel();
  while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(tokens, 5000);
  ExpectEverythingFreed();
  // The cluster still serves.
  StreamResult after = RunGenerate(cluster_->stub(), IdsRequest({1, 2, 3}, TestSampling(4)));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.token_ids.size(), 4u);
}

TEST_F(ClusterCancellationTest, DeadlineFreesStateOnEveryStage) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  auto reader = cluster_->stub()->Generate(&ctx, LongRequest());
  v1::GenerateChunk chunk;
  int tokens = 0;
  bool checked = false;
  while (reader->Read(&chunk)) {
    tokens += chunk.token_ids_size();
    if (!checked) {
      ExpectStateHeld();
      checked = true;
    }
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GT(tokens, 0);
  EXPECT_LT(tokens, 5000);
  ExpectEverythingFreed();
}

TEST_F(ClusterCancellationTest, SlowGrpcReaderDoesNotBlockOthers) {
  const std::vector<int32_t> slow_prompt = TestPrompt(12, cluster_->config().vocab_size, 8);
  const SamplingParams slow_params = TestSampling(200);
  grpc::ClientContext ctx;
  auto reader = cluster_->stub()->Generate(&ctx, IdsRequest(slow_prompt, slow_params));
  // Not reading `reader`: another request runs to completion meanwhile.
  const std::vector<int32_t> prompt = TestPrompt(5, cluster_->config().vocab_size, 9);
  StreamResult other = RunGenerate(cluster_->stub(), IdsRequest(prompt, TestSampling(16)));
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_EQ(other.token_ids.size(), 16u);
  // The paused stream then delivers all of its tokens.
  std::vector<int32_t> tokens;
  v1::GenerateChunk chunk;
  while (reader->Read(&chunk)) {
    tokens.insert(tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  auto backend = CreateCpuBackend();
  auto engine = Engine::Create(ModelFixtureDir(kModel), EngineOptions{}, backend.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto want = SoloGenerate(engine->get(), slow_prompt, slow_params);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(tokens, want->token_ids);
  auto want_other = SoloGenerate(engine->get(), prompt, TestSampling(16));
  ASSERT_TRUE(want_other.ok()) << want_other.status();
  EXPECT_EQ(other.token_ids, want_other->token_ids);
  ExpectEverythingFreed();
}

}  // namespace
}  // namespace jamba

namespace jamba {
namespace {

// Two gateways over the same layer workers, each planning with the whole (small) KV cache:
// together they ask for more than the workers have. The workers arbitrate with the lifetime
// reservations CreateSequences carries: an admission without room is refused, the gateway
// puts the request back at the head of its queue and retries, and every request completes
// with the single process's tokens - none fails, none oversubscribes a stage.
TEST(SharedWorkersTest, TwoGatewaysWaitForRoomInsteadOfFailing) {
  ClusterOptions options;
  options.model_dir = ModelFixtureDir(kModel);
  options.layer_workers = 2;
  options.stage.kv_cache_tokens = 128;  // 8 blocks of 16 positions on every stage
  auto checkpoint = Checkpoint::Open(options.model_dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const ModelConfig config = (*checkpoint)->config();
  options.expert_specs = DefaultExpertSpecs(config, 2);
  auto cluster = InProcessCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  GatewayConfig second_config;
  second_config.model_dir = options.model_dir;
  second_config.layer_workers = (*cluster)->layer_addresses();
  auto second = Gateway::Create(second_config);
  ASSERT_TRUE(second.ok()) << second.status();
  std::vector<Scheduler*> gateways = {(*cluster)->gateway()->scheduler(), (*second)->scheduler()};

  auto backend = CreateCpuBackend();
  auto engine = Engine::Create(options.model_dir, EngineOptions{}, backend.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  // 10 + 38 = 48 positions: 3 blocks each, so at most 2 sequences fit the 8 blocks, while
  // each gateway alone would admit 2.
  const SamplingParams params = TestSampling(38);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(TestPrompt(10, config.vocab_size, 500 + i));
    auto c = Completion::Create(config, nullptr, prompts.back(), params, 1 << 20);
    ASSERT_TRUE(c.ok()) << c.status();
    auto s = gateways[i % 2]->Submit(*std::move(c));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (int i = 0; i < 6; ++i) {
    Collected got;
    TakeAll(streams[i].get(), &got);
    ASSERT_TRUE(got.done) << "request " << i << " never finished";
    ASSERT_TRUE(got.status.ok()) << i << ": " << got.status;
    auto want = SoloGenerate(engine->get(), prompts[i], params);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(got.tokens, want->token_ids) << "request " << i;
  }
  EXPECT_GT(gateways[0]->Stats().create_refusals + gateways[1]->Stats().create_refusals, 0)
      << "the gateways never competed for the workers' room";
  second->reset();
  EXPECT_TRUE((*cluster)->WaitForEmptyPools(kWait).ok());
  auto infos = (*cluster)->LayerShardInfos();
  ASSERT_TRUE(infos.ok());
  for (const v1::ShardInfoResponse& info : *infos) EXPECT_EQ(info.kv_blocks_reserved(), 0);
}

}  // namespace
}  // namespace jamba
