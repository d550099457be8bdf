// The gateway's Prometheus metrics: a SchedulerObserver recording request latencies (time to
// first token, time per output token, end to end), requests by final status and finish
// reason, token counts, step batch sizes and durations, and rejections; plus the scheduler's
// queue and pool gauges, read at scrape time.
#ifndef JAMBA_GATEWAY_GATEWAY_METRICS_H_
#define JAMBA_GATEWAY_GATEWAY_METRICS_H_

#include "gateway/scheduler.h"
#include "gateway/scheduler_observer.h"
#include "metrics/telemetry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"

namespace jamba {

class GatewayMetrics final : public SchedulerObserver {
 public:
  // Registers the families in `telemetry`'s registry (which must outlive this object).
  explicit GatewayMetrics(Telemetry& telemetry);
  // Adds the scheduler's gauges; `scheduler` must outlive the metrics server.
  void ObserveScheduler(Telemetry& telemetry, Scheduler* scheduler);

  void OnStep(int64_t sequences, int64_t tokens, double seconds) override;
  void OnFirstToken(double seconds) override;
  void OnNextToken(double seconds) override;
  void OnFinished(const absl::Status& status, FinishReason reason, int64_t prompt_tokens,
                  int64_t completion_tokens, double seconds) override;
  void OnRejected(const char* reason) override;

 private:
  prometheus::Histogram& ttft_;
  prometheus::Histogram& tpot_;
  prometheus::Histogram& e2e_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generated_tokens_;
  prometheus::Histogram& batch_size_;
  prometheus::Histogram& step_tokens_;
  prometheus::Histogram& step_seconds_;
  prometheus::Family<prometheus::Counter>& rejected_;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_GATEWAY_METRICS_H_
