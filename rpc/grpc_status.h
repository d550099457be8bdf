// The one conversion between our error values and gRPC's, used at every service boundary.
// absl and gRPC share the canonical code numbering, so codes map one to one.
#ifndef JAMBA_RPC_GRPC_STATUS_H_
#define JAMBA_RPC_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace jamba {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace jamba

#endif  // JAMBA_RPC_GRPC_STATUS_H_
