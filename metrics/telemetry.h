// The metrics set-up of one server process: a registry, the process metrics, per-method gRPC
// metrics (an interceptor for StartServer), component metrics read at scrape time, and the
// /metrics endpoint when --metrics-listen is given.
#ifndef JAMBA_METRICS_TELEMETRY_H_
#define JAMBA_METRICS_TELEMETRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "metrics/grpc_metrics.h"
#include "metrics/metrics_server.h"
#include "metrics/process_metrics.h"
#include "metrics/scrape_time_metrics.h"
#include "prometheus/registry.h"

namespace jamba {

class Telemetry {
 public:
  explicit Telemetry(const BuildInfo& info);

  // For processes that learn the checkpoint's fingerprint after their metrics exist.
  void set_model_fingerprint(const std::string& fingerprint);

  prometheus::Registry& registry() { return *registry_; }
  void AddScrapeTimeMetrics(ScrapeTimeMetrics::Callback callback);
  // For StartServer: records every call's method, status and latency.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
  Interceptors();
  // Serves /metrics on `listen` (HOST:PORT) unless it is empty, and returns the bound port
  // (0 when not serving).
  absl::StatusOr<int> Serve(const std::string& listen);
  void StopServing();

 private:
  struct SharedInfo {
    absl::Mutex mu;
    BuildInfo info ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<SharedInfo> info_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  GrpcServerMetrics grpc_;
  std::unique_ptr<MetricsServer> server_;
};

// The end of every server's main(): /metrics (if `metrics_listen` is set), the gRPC server
// with the metrics interceptor, the "metrics on" / "listening on HOST:PORT" lines, then
// serving until SIGINT/SIGTERM and draining for `grace`. Returns the exit code: 0 after a
// clean drain, 1 (message on stderr, prefixed with `program`) if something cannot start.
int ServeUntilTerminated(const std::string& program, Telemetry& telemetry,
                         const std::string& listen, const std::string& metrics_listen,
                         const std::vector<grpc::Service*>& services, absl::Duration grace);

}  // namespace jamba

#endif  // JAMBA_METRICS_TELEMETRY_H_
