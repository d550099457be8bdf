#include "metrics/telemetry.h"

namespace jamba {

Telemetry::Telemetry(const BuildInfo& info)
    : registry_(std::make_shared<prometheus::Registry>()), grpc_(*registry_) {
  collectables_.push_back(registry_);
  collectables_.push_back(ProcessMetrics(info));
}

void Telemetry::AddScrapeTimeMetrics(ScrapeTimeMetrics::Callback callback) {
  collectables_.push_back(std::make_shared<ScrapeTimeMetrics>(std::move(callback)));
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
Telemetry::Interceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(grpc_.InterceptorFactory());
  return out;
}

absl::StatusOr<int> Telemetry::Serve(const std::string& listen) {
  if (listen.empty()) return 0;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(listen, collectables_);
  if (!server.ok()) return server.status();
  server_ = *std::move(server);
  return server_->port();
}

}  // namespace jamba
