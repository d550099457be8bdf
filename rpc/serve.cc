#include "rpc/serve.h"

#include <pthread.h>
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"

namespace jamba {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

void ServeUntilSignal(grpc::Server* server, absl::Duration grace) {
  WaitForTerminationSignal();
  if (grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

std::string BoundAddress(const std::string& listen, int port) {
  const size_t colon = listen.rfind(':');
  return absl::StrCat(colon == std::string::npos ? listen : listen.substr(0, colon), ":", port);
}

}  // namespace jamba
