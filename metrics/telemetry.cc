#include "metrics/telemetry.h"

#include <iostream>

#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {

Telemetry::Telemetry(const BuildInfo& info)
    : info_(std::make_shared<SharedInfo>()),
      registry_(std::make_shared<prometheus::Registry>()),
      grpc_(*registry_) {
  {
    absl::MutexLock lock(&info_->mu);
    info_->info = info;
  }
  collectables_.push_back(registry_);
  std::shared_ptr<SharedInfo> shared = info_;
  collectables_.push_back(ProcessMetrics([shared] {
    absl::MutexLock lock(&shared->mu);
    return shared->info;
  }));
}

void Telemetry::set_model_fingerprint(const std::string& fingerprint) {
  absl::MutexLock lock(&info_->mu);
  info_->info.model_fingerprint = fingerprint;
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

void Telemetry::StopServing() { server_.reset(); }

absl::StatusOr<int> Telemetry::Serve(const std::string& listen) {
  if (listen.empty()) return 0;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(listen, collectables_);
  if (!server.ok()) return server.status();
  server_ = *std::move(server);
  return server_->port();
}

int ServeUntilTerminated(const std::string& program, Telemetry& telemetry,
                         const std::string& listen, const std::string& metrics_listen,
                         const std::vector<grpc::Service*>& services, absl::Duration grace) {
  absl::StatusOr<int> metrics_port = telemetry.Serve(metrics_listen);
  if (!metrics_port.ok()) {
    std::cerr << program << ": " << metrics_port.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<RunningServer> server = StartServer(listen, services, telemetry.Interceptors());
  if (!server.ok()) {
    std::cerr << program << ": " << server.status().message() << "\n";
    return 1;
  }
  if (*metrics_port != 0) {
    std::cout << "metrics on " << BoundAddress(metrics_listen, *metrics_port) << std::endl;
  }
  std::cout << "listening on " << BoundAddress(listen, server->port) << std::endl;
  ServeUntilSignal(server->server.get(), grace);
  // Scrape-time metrics read objects main() is about to destroy: stop serving them first.
  telemetry.StopServing();
  return 0;
}

}  // namespace jamba
