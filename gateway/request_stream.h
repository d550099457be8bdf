// The hand-off between the scheduler thread, which produces one request's tokens, and the RPC
// handler thread, which writes them to the client. Tokens queue here until the handler takes
// them (all at once, so a slow reader gets larger chunks, not more of them); when
// `max_pending` are waiting, the scheduler stops decoding the sequence until the reader
// catches up. That is the back-pressure: a slow or stalled client costs a bounded buffer and
// its own sequence's progress, not memory or other requests' latency.
#ifndef JAMBA_GATEWAY_REQUEST_STREAM_H_
#define JAMBA_GATEWAY_REQUEST_STREAM_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/completion.h"

namespace jamba {

// What the handler takes from the stream in one go.
struct StreamUpdate {
  std::vector<TokenEvent> events;             // new tokens, in order
  std::vector<TokenLogprob> prompt_logprobs;  // once, with the first tokens (if requested)
  bool done = false;
  absl::Status status;  // when done: OK, or why the request failed
  FinishReason finish_reason = FinishReason::kNone;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

class RequestStream {
 public:
  // `wake` is called (from the handler thread) when the scheduler may have new work: the
  // stream was cancelled, or a paused stream drained.
  RequestStream(int32_t max_pending, std::function<void()> wake)
      : max_pending_(max_pending), wake_(std::move(wake)) {}

  // ---- Handler side. ------------------------------------------------------------------
  // Waits up to `timeout` for news and moves all of it into `out`. Returns false if there was
  // none (timeout), true otherwise; once `out->done` is returned, nothing more will come.
  bool Take(absl::Duration timeout, StreamUpdate* out);
  // Asks the scheduler to stop the sequence and free its state (client gone, deadline).
  void Cancel();

  // ---- Scheduler side. ----------------------------------------------------------------
  bool cancelled() const;
  // Whether the reader is so far behind that the sequence should not decode this step.
  bool paused() const;
  void Push(TokenEvent event);
  void SetPromptLogprobs(std::vector<TokenLogprob> logprobs);
  void Finish(absl::Status status, FinishReason reason, int64_t prompt_tokens,
              int64_t completion_tokens);

 private:
  const int32_t max_pending_;
  const std::function<void()> wake_;
  mutable absl::Mutex mu_;
  StreamUpdate pending_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;   // Finish was called
  bool delivered_ ABSL_GUARDED_BY(mu_) = false;  // the done update was taken
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_REQUEST_STREAM_H_
