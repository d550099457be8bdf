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
  if (o.pipeline_depth < 0 || o.pipeline_depth > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline_depth must be in [0, 64] (0: one batch per stage), got ", o.pipeline_depth));
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(std::vector<SequenceExecutor*> executors, const SchedulerOptions& options,
                     SchedulerObserver* observer)
    : observer_(observer), options_(options), executors_(std::move(executors)) {
  JAMBA_CHECK_MSG(!executors_.empty(), "a scheduler needs an executor");
  {
    absl::MutexLock lock(&mu_);
    int32_t default_depth = 1;
    max_context_ = INT64_MAX;
    for (SequenceExecutor* e : executors_) {
      Lane lane;
      lane.limits = e->limits();
      lane.max_running = std::min(options.max_running, lane.limits.max_sequences);
      if (lane.limits.kv_blocks >= 0) {
        JAMBA_CHECK_MSG(kv_block_size_ == 0 || kv_block_size_ == lane.limits.kv_block_size,
                        "pipelines with different KV block sizes");
        kv_block_size_ = lane.limits.kv_block_size;
        largest_kv_blocks_ = std::max(largest_kv_blocks_, lane.limits.kv_blocks);
      }
      max_context_ = std::min(max_context_, lane.limits.max_context);
      default_depth = std::max(default_depth, e->DefaultDepth());
      lanes_.push_back(lane);
    }
    depth_ = options.pipeline_depth > 0 ? options.pipeline_depth : default_depth;
  }
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
  thread_.join();  // after the batches in flight came back
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

int64_t Scheduler::ReserveTokens(const Completion& c) const {
  if (largest_kv_blocks_ < 0) return 0;
  return std::min<int64_t>(c.prompt_tokens() + c.params().max_new_tokens, max_context_);
}

int64_t Scheduler::KvBlocksFor(const Completion& c) const {
  if (largest_kv_blocks_ < 0) return 0;
  return KvCachePool::BlocksFor(ReserveTokens(c), kv_block_size_);
}

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Submit(
    std::unique_ptr<Completion> completion) {
  const int64_t blocks = KvBlocksFor(*completion);
  if (largest_kv_blocks_ >= 0 && blocks > largest_kv_blocks_) {
    if (observer_ != nullptr) observer_->OnRejected("too_large");
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt + max_new_tokens need ", blocks, " KV blocks, more than the ", largest_kv_blocks_,
        " a pipeline of the cluster has in all; lower max_new_tokens"));
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
    // One snapshot of everything mu_ guards.
    absl::MutexLock lock(&mu_);
    s.queued = static_cast<int64_t>(queue_.size());
    for (const Lane& lane : lanes_) {
      s.running += lane.running;
      s.kv_blocks_reserved += lane.kv_blocks_reserved;
      s.pipelines.push_back(PipelineStats{lane.running, lane.in_flight, lane.kv_blocks_reserved});
    }
    s.in_flight = in_flight_count_;
    s.max_in_flight = max_in_flight_;
    s.create_refusals = create_refusals_;
  }
  s.steps = steps_.load();
  s.pipeline_depth = depth_;
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
  while (!queue_.empty()) {
    Sequence& head = *queue_.front();
    const int p = PlaceHead(head.kv_blocks);
    if (p < 0) break;
    Lane& lane = lanes_[p];
    lane.kv_blocks_reserved += head.kv_blocks;
    ++lane.running;
    head.pipeline = static_cast<size_t>(p);
    admitted->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

int Scheduler::PlaceHead(int64_t kv_blocks) const {
  int best = -1;
  int64_t best_free = -1;
  const absl::Time now = absl::Now();
  for (size_t p = 0; p < lanes_.size(); ++p) {
    const Lane& lane = lanes_[p];
    if (lane.running >= lane.max_running || lane.refused_until > now) continue;
    const int64_t free =
        lane.limits.kv_blocks < 0 ? INT64_MAX : lane.limits.kv_blocks - lane.kv_blocks_reserved;
    if (free < kv_blocks) continue;
    if (best < 0 || free > best_free ||
        (free == best_free && lane.running < lanes_[best].running)) {
      best = static_cast<int>(p);
      best_free = free;
    }
  }
  return best;
}

void Scheduler::Retire(std::vector<std::unique_ptr<Sequence>>* done) {
  if (done->empty()) return;
  std::vector<std::vector<SequenceId>> ids(executors_.size());
  std::vector<int64_t> blocks(executors_.size(), 0), count(executors_.size(), 0);
  for (const auto& s : *done) {
    ids[s->pipeline].push_back(s->id);
    blocks[s->pipeline] += s->kv_blocks;
    ++count[s->pipeline];
  }
  // A stage that cannot be reached keeps its copy until it restarts; the reservation is
  // returned regardless, since the other stages did free theirs.
  for (size_t p = 0; p < executors_.size(); ++p) {
    if (!ids[p].empty()) executors_[p]->Release(ids[p]).IgnoreError();
  }
  finished_.fetch_add(static_cast<int64_t>(done->size()), std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  for (size_t p = 0; p < lanes_.size(); ++p) {
    lanes_[p].kv_blocks_reserved -= blocks[p];
    lanes_[p].running -= count[p];
    // Room of ours was freed there: a refused admission may try again at once.
    if (count[p] > 0) lanes_[p].refused_until = absl::InfinitePast();
  }
  done->clear();
}

void Scheduler::Run() {
  while (true) {
    std::deque<std::pair<int64_t, absl::StatusOr<StepOutput>>> returned;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      // Sleep until something happened: a batch came back, a new request, a cancellation or
      // a drained reader (the last three through wake_).
      // Stopping: launch nothing more, and leave once the batches in flight are back.
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !returned_.empty() || (stop_ ? in_flight_count_ == 0 : wake_);
      };
      // Admission refused by a worker is retried when the refusal expires even if nothing
      // else happens. The wake-up is recomputed from the lanes rather than cleared on the
      // timeout, which may fire a little before absl::Now() reaches the deadline.
      mu_.AwaitWithDeadline(absl::Condition(&ready), retry_at_);
      const absl::Time now = absl::Now();
      retry_at_ = absl::InfiniteFuture();
      for (const Lane& lane : lanes_) {
        if (lane.refused_until > now) retry_at_ = std::min(retry_at_, lane.refused_until);
      }
      if (stop_ && in_flight_count_ == 0 && returned_.empty()) return;
      stopping = stop_;
      wake_ = false;
      returned.swap(returned_);
    }
    for (auto& [id, out] : returned) {
      auto it = in_flight_.find(id);
      JAMBA_CHECK(it != in_flight_.end());
      Batch batch = std::move(it->second);
      in_flight_.erase(it);
      {
        absl::MutexLock lock(&mu_);
        --in_flight_count_;
        --lanes_[batch.pipeline].in_flight;
      }
      Complete(batch, std::move(out));
    }
    if (stopping) continue;
    AdmitAndCancel();
    Launch();
  }
}

void Scheduler::Collect(const std::vector<Sequence*>& finished,
                        std::vector<std::unique_ptr<Sequence>>* done) {
  for (Sequence* s : finished) {
    for (auto& r : running_) {
      if (r.get() == s) done->push_back(std::move(r));
    }
  }
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
}

void Scheduler::AdmitAndCancel() {
  std::vector<std::unique_ptr<Sequence>> done;
  std::vector<Sequence*> cancelled;
  for (auto& s : running_) {
    // A sequence in flight is cancelled when its batch is back.
    if (!s->in_flight && s->stream->cancelled()) {
      Finish(*s, absl::CancelledError("cancelled by the client"));
      cancelled.push_back(s.get());
    }
  }
  Collect(cancelled, &done);
  Retire(&done);
  std::vector<std::unique_ptr<Sequence>> admitted;
  {
    absl::MutexLock lock(&mu_);
    Admit(&admitted);
  }
  if (admitted.empty()) return;
  for (size_t p = 0; p < executors_.size(); ++p) {
    std::vector<std::unique_ptr<Sequence>> here;
    std::vector<SequenceId> ids;
    for (auto& s : admitted) {
      if (s == nullptr || s->pipeline != p) continue;
      ids.push_back(s->id);
      here.push_back(std::move(s));
    }
    if (here.empty()) continue;
    std::vector<int64_t> reserve;
    for (const auto& s : here) reserve.push_back(ReserveTokens(*s->completion));
    absl::Status created = executors_[p]->Create(ids, reserve);
    if (created.ok()) {
      for (auto& s : here) running_.push_back(std::move(s));
    } else if (absl::IsResourceExhausted(created)) {
      // A stage's room is held by another gateway's sequences: back to the head of the queue,
      // in order, to be admitted when something finishes or after a pause.
      absl::MutexLock lock(&mu_);
      for (auto it = here.rbegin(); it != here.rend(); ++it) {
        lanes_[p].kv_blocks_reserved -= (*it)->kv_blocks;
        --lanes_[p].running;
        queue_.push_front(std::move(*it));
      }
      lanes_[p].refused_until = absl::Now() + kCreateRetry;
      retry_at_ = std::min(retry_at_, lanes_[p].refused_until);
      ++create_refusals_;
    } else {
      for (auto& s : here) Finish(*s, created);
      Retire(&here);
    }
  }
}

bool Scheduler::NextBatch(size_t p, Batch* batch, std::vector<int32_t>* tokens) {
  batch->pipeline = p;
  // Decodes first: the sequences not in flight, longest-waiting first, at most a 1/depth
  // share of all decoding sequences, so that the batches in flight stay near-equal.
  std::vector<Sequence*> decodes;
  int64_t decoding = 0;
  for (auto& s : running_) {
    if (s->pipeline != p || s->fed < s->completion->prompt_tokens()) continue;
    ++decoding;
    if (!s->in_flight && !s->stream->paused()) decodes.push_back(s.get());
  }
  std::stable_sort(decodes.begin(), decodes.end(), [](const Sequence* a, const Sequence* b) {
    return a->last_batch < b->last_batch;
  });
  int64_t budget = options_.max_tokens_per_step;
  const int64_t share = (decoding + depth_ - 1) / depth_;
  if (static_cast<int64_t>(decodes.size()) > share) decodes.resize(static_cast<size_t>(share));
  for (Sequence* s : decodes) {
    if (budget < 1) break;
    // Requests without penalties or logprobs get their token sampled by the last stage on its
    // device, not the logits.
    const bool on_device = s->completion->samples_on_device();
    batch->items.push_back(StageItem{s->id, 1, s->fed,
                                     on_device ? LogitsRows::kLastToken : LogitsRows::kLast,
                                     on_device ? s->completion->DeviceSampling() : RowSampling{}});
    tokens->push_back(s->completion->generated().back());
    batch->sequences.push_back(s);
    --budget;
  }
  for (auto& s : running_) {
    const int64_t prompt = s->completion->prompt_tokens();
    if (s->pipeline != p || s->fed >= prompt || s->in_flight || budget < 1) continue;
    const int64_t n = std::min<int64_t>({prompt - s->fed, options_.prefill_chunk, budget});
    const bool last_chunk = s->fed + n == prompt;
    const LogitsRows rows = s->completion->wants_prompt_rows()   ? LogitsRows::kAll
                            : !last_chunk                        ? LogitsRows::kNone
                            : s->completion->samples_on_device() ? LogitsRows::kLastToken
                                                                 : LogitsRows::kLast;
    batch->items.push_back(StageItem{
        s->id, static_cast<int32_t>(n), s->fed, rows,
        rows == LogitsRows::kLastToken ? s->completion->DeviceSampling() : RowSampling{}});
    const std::vector<int32_t>& ids = s->completion->prompt();
    tokens->insert(tokens->end(), ids.begin() + s->fed, ids.begin() + s->fed + n);
    batch->sequences.push_back(s.get());
    budget -= n;
  }
  batch->tokens = static_cast<int64_t>(tokens->size());
  return !batch->items.empty();
}

void Scheduler::Launch() {
  for (size_t p = 0; p < executors_.size(); ++p) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (lanes_[p].in_flight >= depth_) break;
      }
      Batch batch;
      std::vector<int32_t> tokens;
      if (!NextBatch(p, &batch, &tokens)) break;  // nothing to run until something returns
      const int64_t id = next_batch_++;
      for (Sequence* s : batch.sequences) {
        s->in_flight = true;
        s->last_batch = id;
      }
      batch.start = absl::Now();
      std::vector<StageItem> items = batch.items;
      in_flight_.emplace(id, std::move(batch));
      {
        absl::MutexLock lock(&mu_);
        ++lanes_[p].in_flight;
        max_in_flight_ = std::max(max_in_flight_, ++in_flight_count_);
      }
      executors_[p]->ForwardAsync(std::move(items), std::move(tokens),
                                  [this, id](absl::StatusOr<StepOutput> out) {
                                    absl::MutexLock lock(&mu_);
                                    returned_.emplace_back(id, std::move(out));
                                  });
    }
  }
}

void Scheduler::Complete(Batch& batch, absl::StatusOr<StepOutput> out) {
  if (observer_ != nullptr) {
    observer_->OnStep(static_cast<int64_t>(batch.items.size()), batch.tokens,
                      absl::ToDoubleSeconds(absl::Now() - batch.start));
  }
  steps_.fetch_add(1, std::memory_order_relaxed);
  step_tokens_.fetch_add(batch.tokens, std::memory_order_relaxed);
  std::vector<Sequence*> finished;
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    Sequence& s = *batch.sequences[i];
    s.in_flight = false;
    Completion& c = *s.completion;
    absl::Status status = out.status();
    if (s.stream->cancelled()) {
      // Cancelled while in flight: what the batch brought back is dropped.
      status = absl::CancelledError("cancelled by the client");
    } else if (status.ok()) {
      const int64_t prompt = c.prompt_tokens();
      const bool prefill = s.fed < prompt;
      if (prefill && batch.items[i].logits == LogitsRows::kAll) {
        for (int64_t r = 0; r < batch.items[i].n_tokens; ++r) {
          c.ObservePromptRow(s.fed + r, out->Row(i, r));
        }
      }
      s.fed += batch.items[i].n_tokens;
      if (s.fed < prompt) continue;  // more prompt to go
      if (prefill && c.wants_prompt_rows()) s.stream->SetPromptLogprobs(c.prompt_logprobs());
      absl::StatusOr<TokenEvent> event = batch.items[i].logits == LogitsRows::kLastToken
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
    finished.push_back(&s);
  }
  std::vector<std::unique_ptr<Sequence>> done;
  Collect(finished, &done);
  Retire(&done);
}

}  // namespace jamba
