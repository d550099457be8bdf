#include "gateway/gateway_metrics.h"

#include <string>
#include <utility>
#include <vector>

namespace jamba {
namespace {

using Buckets = prometheus::Histogram::BucketBoundaries;

Buckets Exponential(double start, double factor, int count) {
  Buckets b;
  for (double v = start; count-- > 0; v *= factor) b.push_back(v);
  return b;
}

prometheus::Histogram& Histogram(prometheus::Registry& r, const std::string& name,
                                 const std::string& help, Buckets buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

prometheus::Counter& Counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

GatewayMetrics::GatewayMetrics(Telemetry& t)
    : ttft_(Histogram(t.registry(), "jamba_time_to_first_token_seconds",
                      "From a request's arrival to its first generated token",
                      Exponential(0.001, 2, 18))),
      tpot_(Histogram(t.registry(), "jamba_time_per_output_token_seconds",
                      "Between consecutive generated tokens of a request",
                      Exponential(0.001, 2, 16))),
      e2e_(Histogram(t.registry(), "jamba_request_duration_seconds",
                     "From a request's arrival to its end", Exponential(0.01, 2, 18))),
      requests_(prometheus::BuildCounter()
                    .Name("jamba_requests_total")
                    .Help("Requests ended, by final status code and finish reason")
                    .Register(t.registry())),
      prompt_tokens_(
          Counter(t.registry(), "jamba_prompt_tokens_total", "Prompt tokens of ended requests")),
      generated_tokens_(Counter(t.registry(), "jamba_generation_tokens_total",
                                "Tokens generated for ended requests")),
      batch_size_(Histogram(t.registry(), "jamba_batch_size", "Sequences in each forward step",
                            Exponential(1, 2, 10))),
      step_tokens_(Histogram(t.registry(), "jamba_step_tokens", "Token rows in each forward step",
                             Exponential(1, 2, 14))),
      step_seconds_(Histogram(t.registry(), "jamba_step_duration_seconds",
                              "Duration of each forward step over all stages",
                              Exponential(0.001, 2, 16))),
      rejected_(prometheus::BuildCounter()
                    .Name("jamba_requests_rejected_total")
                    .Help("Requests refused at submission, by reason")
                    .Register(t.registry())) {
  // Zero-valued series exist from the start, so rates and dashboards have data at once.
  rejected_.Add({{"reason", "queue_full"}});
  rejected_.Add({{"reason", "too_large"}});
}

void GatewayMetrics::ObserveScheduler(Telemetry& telemetry, Scheduler* scheduler) {
  telemetry.AddScrapeTimeMetrics([scheduler] {
    const SchedulerStats s = scheduler->Stats();
    auto one = [](double v) { return std::vector<std::pair<MetricLabels, double>>{{{}, v}}; };
    std::vector<std::pair<MetricLabels, double>> running, in_flight;
    for (size_t p = 0; p < s.pipelines.size(); ++p) {
      const MetricLabels label = {{"pipeline", std::to_string(p)}};
      running.push_back({label, static_cast<double>(s.pipelines[p].running)});
      in_flight.push_back({label, static_cast<double>(s.pipelines[p].in_flight)});
    }
    return std::vector<prometheus::MetricFamily>{
        GaugeFamily("jamba_requests_waiting", "Requests queued for admission", one(s.queued)),
        GaugeFamily("jamba_requests_running", "Sequences in the running batch", one(s.running)),
        GaugeFamily("jamba_kv_blocks_reserved", "KV blocks reserved by admitted sequences",
                    one(s.kv_blocks_reserved)),
        GaugeFamily("jamba_pipeline_running", "Sequences running on each pipeline", running),
        GaugeFamily("jamba_pipeline_batches_in_flight",
                    "Batches in flight on each pipeline (at most the pipeline depth)", in_flight),
        GaugeFamily("jamba_pipeline_depth", "Batches each pipeline may have in flight",
                    one(s.pipeline_depth)),
        CounterFamily("jamba_create_refusals_total",
                      "Admissions a layer worker refused for lack of room (held by another "
                      "gateway's sequences); the requests waited and were retried",
                      one(static_cast<double>(s.create_refusals))),
    };
  });
}

void GatewayMetrics::OnStep(int64_t sequences, int64_t tokens, double seconds) {
  batch_size_.Observe(static_cast<double>(sequences));
  step_tokens_.Observe(static_cast<double>(tokens));
  step_seconds_.Observe(seconds);
}

void GatewayMetrics::OnFirstToken(double seconds) { ttft_.Observe(seconds); }

void GatewayMetrics::OnNextToken(double seconds) { tpot_.Observe(seconds); }

void GatewayMetrics::OnFinished(const absl::Status& status, FinishReason reason,
                                int64_t prompt_tokens, int64_t completion_tokens, double seconds) {
  std::string code = absl::StatusCodeToString(status.code());
  requests_
      .Add({{"code", code},
            {"finish_reason", reason == FinishReason::kNone ? "none" : FinishReasonName(reason)}})
      .Increment();
  prompt_tokens_.Increment(static_cast<double>(prompt_tokens));
  generated_tokens_.Increment(static_cast<double>(completion_tokens));
  e2e_.Observe(seconds);
}

void GatewayMetrics::OnRejected(const char* reason) {
  rejected_.Add({{"reason", reason}}).Increment();
}

}  // namespace jamba
