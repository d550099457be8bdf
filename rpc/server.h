// Starting a gRPC server the way every process of the cluster needs it: the standard
// grpc.health.v1 service, server reflection (v1alpha, the only one gRPC 1.51 has), message
// limits raised above gRPC's 4 MiB default (activations exceed it), and the bound port
// reported back (listen on port 0 to get a free one, as tests do).
#ifndef JAMBA_RPC_SERVER_H_
#define JAMBA_RPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_interceptor.h"

namespace jamba {

inline constexpr int kMaxMessageBytes = 256 << 20;

struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the port actually bound
};

// `address` is HOST:PORT; services must outlive the server. `interceptors` (e.g. metrics)
// see every call.
absl::StatusOr<RunningServer> StartServer(
    const std::string& address, const std::vector<grpc::Service*>& services,
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors = {});

}  // namespace jamba

#endif  // JAMBA_RPC_SERVER_H_
