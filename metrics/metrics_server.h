// Prometheus metrics of one process: a registry every component registers its metrics in,
// served over HTTP at /metrics on its own port, apart from gRPC. Names follow the Prometheus
// conventions: a `jamba_` prefix, base units, `_total` counters.
//
// The HTTP side is our own small server (one thread, one connection at a time, HTTP/1.0 and
// 1.1 GET with Connection: close) rather than prometheus-cpp's civetweb Exposer: civetweb
// starts its threads with a fixed 100 KiB stack, which glibc refuses (EINVAL) once a library
// with a large static TLS block is loaded - cuBLASLt has 94 KiB - so every GPU process would
// have lost its metrics. Serialisation is prometheus-cpp's.
#ifndef JAMBA_METRICS_METRICS_SERVER_H_
#define JAMBA_METRICS_METRICS_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/registry.h"

namespace jamba {

class MetricsServer {
 public:
  // Serves the collectables (a registry, scrape-time metrics) at http://`listen`/metrics
  // (HOST:PORT, [IPv6]:PORT; port 0: a free one); keeps them alive. Unavailable when the
  // address cannot be resolved or bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // Stops accepting, finishes the connection in progress (bounded by the I/O timeouts) and
  // closes the socket.
  ~MetricsServer();

  int port() const { return port_; }

 private:
  MetricsServer() = default;
  void Serve();
  void HandleConnection(int fd);

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a pipe: writing to it ends Serve()
  int port_ = 0;
  std::thread thread_;
};

// The exposition text of `registry` (what /metrics serves), for tests and tools.
std::string SerializeMetrics(prometheus::Registry& registry);

}  // namespace jamba

#endif  // JAMBA_METRICS_METRICS_SERVER_H_
