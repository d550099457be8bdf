// Per-method gRPC server metrics for every process, recorded by a server interceptor:
// jamba_grpc_server_handled_total{method, code} and the latency histogram
// jamba_grpc_server_handling_seconds{method} (from the call's start to its status; for
// streaming calls, the whole stream).
#ifndef JAMBA_METRICS_GRPC_METRICS_H_
#define JAMBA_METRICS_GRPC_METRICS_H_

#include <memory>
#include <string>

#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace jamba {

class GrpcServerMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit GrpcServerMetrics(prometheus::Registry& registry);

  // A factory for grpc::ServerBuilder's interceptors; this object must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  void Record(const std::string& method, grpc::StatusCode code, double seconds);

 private:
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& latency_;
};

}  // namespace jamba

#endif  // JAMBA_METRICS_GRPC_METRICS_H_
