#include "gateway/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "engine/state/kv_cache_pool.h"

namespace jamba {

absl::Status ValidateSchedulerOptions(const SchedulerOptions& o) {
  if (o.max_running < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_running must be >= 1, got ", o.max_running));
  }
  if (o.max_tokens_per_step < o.max_running) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens_per_step (", o.max_tokens_per_step, ") must be >= max_running (",
                     o.max_running, "), so every running sequence can decode in one step"));
  }
  if (o.max_queue < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_queue must be >= 0, got ", o.max_queue));
  }
  if (o.prefill_chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill_chunk must be >= 1, got ", o.prefill_chunk));
  }
  if (o.max_pending_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_pending_tokens must be >= 1, got ", o.max_pending_tokens));
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(SequenceExecutor* executor, const SchedulerOptions& options,
                     SchedulerObserver* observer)
    : executor_(executor),
      observer_(observer),
      options_(options),
      limits_(executor->limits()),
      max_running_(std::min(options.max_running, limits_.max_sequences)) {
  JAMBA_CHECK_MSG(ValidateSchedulerOptions(options).ok(), "invalid SchedulerOptions");
  {
    // Ids unique across gateway restarts too, so a restarted gateway never collides with
    // sequences a worker may still hold from its predecessor.
    absl::MutexLock lock(&mu_);
    next_id_ = absl::ToUnixMicros(absl::Now()) << 8;
  }
  thread_ = std::thread([this] { Run(); });
}

Scheduler::~Scheduler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  const absl::Status down = absl::UnavailableError("the gateway is shutting down");
  std::vector<std::unique_ptr<Sequence>> done;
  {
    absl::MutexLock lock(&mu_);
    for (auto& s : queue_) {
      Finish(*s, down);
    }
    queue_.clear();
  }
  for (auto& s : running_) {
    Finish(*s, down);
    done.push_back(std::move(s));
  }
  running_.clear();
  Retire(&done);
}

void Scheduler::Finish(Sequence& s, const absl::Status& status) {
  const Completion& c = *s.completion;
  const int64_t generated = static_cast<int64_t>(c.generated().size());
  s.stream->Finish(status, c.finish_reason(), c.prompt_tokens(), generated);
  if (observer_ != nullptr) {
    observer_->OnFinished(status, c.finish_reason(), c.prompt_tokens(), generated,
                          absl::ToDoubleSeconds(absl::Now() - s.submitted));
  }
}

int64_t Scheduler::KvBlocksFor(const Completion& c) const {
  if (limits_.kv_blocks < 0) return 0;
  const int64_t tokens =
      std::min<int64_t>(c.prompt_tokens() + c.params().max_new_tokens, limits_.max_context);
  return KvCachePool::BlocksFor(tokens, limits_.kv_block_size);
}

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Submit(
    std::unique_ptr<Completion> completion) {
  const int64_t blocks = KvBlocksFor(*completion);
  if (limits_.kv_blocks >= 0 && blocks > limits_.kv_blocks) {
    if (observer_ != nullptr) observer_->OnRejected("too_large");
    return absl::ResourceExhaustedError(
        absl::StrCat("prompt + max_new_tokens need ", blocks, " KV blocks, more than the ",
                     limits_.kv_blocks, " the cluster has in all; lower max_new_tokens"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->completion = std::move(completion);
  seq->kv_blocks = blocks;
  seq->submitted = absl::Now();
  seq->last_token = absl::InfinitePast();
  seq->stream = std::make_shared<RequestStream>(options_.max_pending_tokens, [this] { Wake(); });
  std::shared_ptr<RequestStream> stream = seq->stream;
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("the gateway is shutting down");
  if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
    rejected_full_.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) observer_->OnRejected("queue_full");
    return absl::ResourceExhaustedError(
        absl::StrCat("the request queue is full (", options_.max_queue, " waiting); retry later"));
  }
  seq->id = next_id_++;
  queue_.push_back(std::move(seq));
  wake_ = true;
  return stream;
}

void Scheduler::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

SchedulerStats Scheduler::Stats() const {
  SchedulerStats s;
  {
    absl::MutexLock lock(&mu_);
    s.queued = static_cast<int64_t>(queue_.size());
    s.running = running_count_;
    s.kv_blocks_reserved = kv_blocks_reserved_;
  }
  s.steps = steps_.load();
  s.step_tokens = step_tokens_.load();
  s.generated_tokens = generated_.load();
  s.finished = finished_.load();
  s.rejected_queue_full = rejected_full_.load();
  return s;
}

void Scheduler::Admit(std::vector<std::unique_ptr<Sequence>>* admitted) {
  // Requests cancelled while queued end here without ever touching a worker.
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->stream->cancelled()) {
      Finish(**it, absl::CancelledError("cancelled by the client"));
      finished_.fetch_add(1, std::memory_order_relaxed);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  // FIFO: the head waits for room rather than being overtaken, so large requests are not
  // starved by a stream of small ones.
  while (!queue_.empty() && running_count_ < max_running_) {
    Sequence& head = *queue_.front();
    if (limits_.kv_blocks >= 0 && kv_blocks_reserved_ + head.kv_blocks > limits_.kv_blocks) {
      break;
    }
    kv_blocks_reserved_ += head.kv_blocks;
    ++running_count_;
    admitted->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

void Scheduler::Retire(std::vector<std::unique_ptr<Sequence>>* done) {
  if (done->empty()) return;
  std::vector<SequenceId> ids;
  int64_t blocks = 0;
  for (const auto& s : *done) {
    ids.push_back(s->id);
    blocks += s->kv_blocks;
  }
  // A stage that cannot be reached keeps its copy until it restarts; the reservation is
  // returned regardless, since the other stages did free theirs.
  executor_->Release(ids).IgnoreError();
  finished_.fetch_add(static_cast<int64_t>(done->size()), std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  kv_blocks_reserved_ -= blocks;
  running_count_ -= static_cast<int64_t>(done->size());
  done->clear();
}

void Scheduler::Run() {
  bool idle = false;  // the last step found nothing to run (every reader behind)
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Sleep until there is something to do: a new request, a cancellation or a drained
      // reader (all signalled through wake_), or running sequences that made progress - or
      // queued requests after a step that may have freed room for them (the last running
      // sequence finishing wakes nobody else).
      auto ready = [this, idle]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || wake_ || (!idle && (!running_.empty() || !queue_.empty()));
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      wake_ = false;
    }
    idle = !Step();
  }
}

bool Scheduler::Step() {
  std::vector<std::unique_ptr<Sequence>> done;
  // ---- 1. Cancellations and admissions. ------------------------------------------------
  for (auto& s : running_) {
    if (s->stream->cancelled()) {
      Finish(*s, absl::CancelledError("cancelled by the client"));
      done.push_back(std::move(s));
    }
  }
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  Retire(&done);
  std::vector<std::unique_ptr<Sequence>> admitted;
  {
    absl::MutexLock lock(&mu_);
    Admit(&admitted);
  }
  if (!admitted.empty()) {
    std::vector<SequenceId> ids;
    for (const auto& s : admitted) ids.push_back(s->id);
    absl::Status created = executor_->Create(ids);
    if (created.ok()) {
      for (auto& s : admitted) running_.push_back(std::move(s));
    } else {
      for (auto& s : admitted) {
        Finish(*s, created);
      }
      Retire(&admitted);
    }
  }

  // ---- 2. The batch: decodes first, then prompt chunks within the token budget. ----------
  std::vector<StageItem> items;
  std::vector<Sequence*> batch;
  std::vector<int32_t> tokens;
  int64_t budget = options_.max_tokens_per_step;
  for (auto& s : running_) {
    const int64_t prompt = s->completion->prompt_tokens();
    if (s->fed < prompt || budget < 1 || s->stream->paused()) continue;
    // Requests without penalties or logprobs get their token sampled by the last stage on its
    // device, not the logits.
    const bool on_device = s->completion->samples_on_device();
    items.push_back(StageItem{s->id, 1, s->fed,
                              on_device ? LogitsRows::kLastToken : LogitsRows::kLast,
                              on_device ? s->completion->DeviceSampling() : RowSampling{}});
    tokens.push_back(s->completion->generated().back());
    batch.push_back(s.get());
    --budget;
  }
  for (auto& s : running_) {
    const int64_t prompt = s->completion->prompt_tokens();
    if (s->fed >= prompt || budget < 1) continue;
    const int64_t n = std::min<int64_t>({prompt - s->fed, options_.prefill_chunk, budget});
    const bool last_chunk = s->fed + n == prompt;
    const LogitsRows rows = s->completion->wants_prompt_rows()   ? LogitsRows::kAll
                            : !last_chunk                        ? LogitsRows::kNone
                            : s->completion->samples_on_device() ? LogitsRows::kLastToken
                                                                 : LogitsRows::kLast;
    items.push_back(StageItem{
        s->id, static_cast<int32_t>(n), s->fed, rows,
        rows == LogitsRows::kLastToken ? s->completion->DeviceSampling() : RowSampling{}});
    const std::vector<int32_t>& p = s->completion->prompt();
    tokens.insert(tokens.end(), p.begin() + s->fed, p.begin() + s->fed + n);
    batch.push_back(s.get());
    budget -= n;
  }
  if (items.empty()) return false;  // every running reader is behind; wait for a wake

  // ---- 3. Forward, sample, stream. ------------------------------------------------------
  const absl::Time step_start = absl::Now();
  absl::StatusOr<StepOutput> out = executor_->Forward(items, tokens);
  if (observer_ != nullptr) {
    observer_->OnStep(static_cast<int64_t>(items.size()), static_cast<int64_t>(tokens.size()),
                      absl::ToDoubleSeconds(absl::Now() - step_start));
  }
  steps_.fetch_add(1, std::memory_order_relaxed);
  step_tokens_.fetch_add(static_cast<int64_t>(tokens.size()), std::memory_order_relaxed);
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& s = *batch[i];
    Completion& c = *s.completion;
    absl::Status status = out.status();
    if (status.ok()) {
      const int64_t prompt = c.prompt_tokens();
      const bool prefill = s.fed < prompt;
      if (prefill && items[i].logits == LogitsRows::kAll) {
        for (int64_t r = 0; r < items[i].n_tokens; ++r) {
          c.ObservePromptRow(s.fed + r, out->Row(i, r));
        }
      }
      s.fed += items[i].n_tokens;
      if (s.fed < prompt) continue;  // more prompt to go
      if (prefill && c.wants_prompt_rows()) s.stream->SetPromptLogprobs(c.prompt_logprobs());
      absl::StatusOr<TokenEvent> event = items[i].logits == LogitsRows::kLastToken
                                             ? c.NextToken(out->token[i])
                                             : c.Next(out->Last(i));
      if (event.ok()) {
        generated_.fetch_add(1, std::memory_order_relaxed);
        s.stream->Push(*std::move(event));
        const absl::Time now = absl::Now();
        if (observer_ != nullptr) {
          if (s.last_token == absl::InfinitePast()) {
            observer_->OnFirstToken(absl::ToDoubleSeconds(now - s.submitted));
          } else {
            observer_->OnNextToken(absl::ToDoubleSeconds(now - s.last_token));
          }
        }
        s.last_token = now;
        if (!c.finished()) continue;
      } else {
        status = event.status();
      }
    }
    Finish(s, status);
    for (auto& r : running_) {
      if (r.get() == &s) done.push_back(std::move(r));
    }
  }
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  Retire(&done);
  return true;
}

}  // namespace jamba
