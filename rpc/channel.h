// Client channels between the cluster's processes: insecure (loopback / in-cluster network),
// with the same raised message limits as the servers (rpc/server.h), since activations and
// logits exceed gRPC's 4 MiB default.
#ifndef JAMBA_RPC_CHANNEL_H_
#define JAMBA_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace jamba {

std::shared_ptr<grpc::Channel> MakeInternalChannel(const std::string& target);

}  // namespace jamba

#endif  // JAMBA_RPC_CHANNEL_H_
