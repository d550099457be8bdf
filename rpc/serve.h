// The serving loop every process of the cluster shares: termination signals (SIGINT,
// SIGTERM) are blocked in every thread from the start of main() - gRPC's threads inherit the
// mask - and waited for synchronously by the main thread, which then drains: health turns
// NOT_SERVING (so load balancers and Kubernetes readiness stop sending work), in-flight calls
// get `grace` to finish, the rest are cancelled.
#ifndef JAMBA_RPC_SERVE_H_
#define JAMBA_RPC_SERVE_H_

#include <string>

#include "absl/time/time.h"
#include "grpcpp/server.h"

namespace jamba {

// Call first thing in main(), before any thread exists.
void BlockTerminationSignals();

// Blocks until SIGINT or SIGTERM arrives; returns the signal number.
int WaitForTerminationSignal();

// Waits for a termination signal, then shuts `server` down gracefully (see above).
void ServeUntilSignal(grpc::Server* server, absl::Duration grace);

// "host:port" for a listen address "host:anything" and the bound port.
std::string BoundAddress(const std::string& listen, int port);

}  // namespace jamba

#endif  // JAMBA_RPC_SERVE_H_
