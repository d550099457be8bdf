#include "gateway/request_stream.h"

#include <utility>

namespace jamba {

bool RequestStream::Take(absl::Duration timeout, StreamUpdate* out) {
  bool was_paused = false;
  {
    absl::MutexLock lock(&mu_);
    auto has_news = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !pending_.events.empty() || !pending_.prompt_logprobs.empty() ||
             (finished_ && !delivered_);
    };
    mu_.AwaitWithTimeout(absl::Condition(&has_news), timeout);
    if (!has_news()) return false;
    was_paused = static_cast<int32_t>(pending_.events.size()) >= max_pending_;
    *out = std::move(pending_);
    pending_ = StreamUpdate();
    if (finished_) delivered_ = true;
  }
  if (was_paused && wake_) wake_();
  return true;
}

void RequestStream::Cancel() {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || finished_) return;
    cancelled_ = true;
  }
  if (wake_) wake_();
}

bool RequestStream::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool RequestStream::paused() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(pending_.events.size()) >= max_pending_;
}

void RequestStream::Push(TokenEvent event) {
  absl::MutexLock lock(&mu_);
  pending_.events.push_back(std::move(event));
}

void RequestStream::SetPromptLogprobs(std::vector<TokenLogprob> logprobs) {
  absl::MutexLock lock(&mu_);
  pending_.prompt_logprobs = std::move(logprobs);
}

void RequestStream::Finish(absl::Status status, FinishReason reason, int64_t prompt_tokens,
                           int64_t completion_tokens) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  pending_.done = true;
  pending_.status = std::move(status);
  pending_.finish_reason = reason;
  pending_.prompt_tokens = prompt_tokens;
  pending_.completion_tokens = completion_tokens;
}

}  // namespace jamba
