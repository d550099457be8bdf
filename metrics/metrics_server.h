// Prometheus metrics of one process: a registry every component registers its metrics in,
// served over HTTP at /metrics (prometheus-cpp's Exposer) on its own port, apart from gRPC.
// Names follow the Prometheus conventions: a `jamba_` prefix, base units, `_total` counters.
#ifndef JAMBA_METRICS_METRICS_SERVER_H_
#define JAMBA_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace jamba {

class MetricsServer {
 public:
  // Serves the collectables (a registry, scrape-time metrics) at http://`listen`/metrics (port
  // 0: a free one); keeps them alive. Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  int port_ = 0;
};

// The exposition text of `registry` (what /metrics serves), for tests and tools.
std::string SerializeMetrics(prometheus::Registry& registry);

}  // namespace jamba

#endif  // JAMBA_METRICS_METRICS_SERVER_H_
