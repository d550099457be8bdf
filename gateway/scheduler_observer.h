// What the scheduler reports as it works, for metrics (gateway/gateway_metrics.h implements
// it over Prometheus) or tests. Called from the scheduler thread (OnRejected: from the caller
// of Submit); implementations must be cheap and thread-safe.
#ifndef JAMBA_GATEWAY_SCHEDULER_OBSERVER_H_
#define JAMBA_GATEWAY_SCHEDULER_OBSERVER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/sampling/stop_checker.h"

namespace jamba {

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // One forward step: sequences in the batch, token rows, and its duration.
  virtual void OnStep(int64_t sequences, int64_t tokens, double seconds) = 0;
  // A request's first token, `seconds` after it was submitted.
  virtual void OnFirstToken(double seconds) = 0;
  // A later token, `seconds` after the request's previous one.
  virtual void OnNextToken(double seconds) = 0;
  // A request ended: its status (OK, or why it failed or was cancelled), finish reason,
  // token counts, and `seconds` since it was submitted.
  virtual void OnFinished(const absl::Status& status, FinishReason reason, int64_t prompt_tokens,
                          int64_t completion_tokens, double seconds) = 0;
  // A request refused at submission ("queue_full", "too_large").
  virtual void OnRejected(const char* reason) = 0;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_SCHEDULER_OBSERVER_H_
