// Which pipeline stage a failed Forward failed at. Activations go stage to stage (a stage
// calls the next one and relays its answer), so an error reaching the gateway through stage 0
// may come from any stage further down; the stage that first saw it names it, in the message
// ("layer worker ADDR: Forward: ...") and, for programs, in the trailing metadata
// `kFailedStageMetadata` = ADDR, which every relaying stage passes on unchanged. Inside a
// process the address rides on the absl::Status as a payload.
#ifndef JAMBA_RPC_STAGE_ERROR_H_
#define JAMBA_RPC_STAGE_ERROR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace jamba {

inline constexpr char kFailedStageMetadata[] = "jamba-failed-stage";

// The failed stage's address carried by `s`, if any.
std::optional<std::string> FailedStage(const absl::Status& s);

// The result of a Forward call to the stage at `address` (after it completed on `ctx`): OK, or
// the error naming the stage that failed - the one the callee reported, or `address` itself.
absl::Status ForwardCallStatus(const grpc::ClientContext& ctx, const grpc::Status& status,
                               const std::string& address);

// The gRPC status a stage answers with; a failed stage named in `s` goes to the trailing
// metadata of `ctx`.
grpc::Status ToGrpcStatusWithStage(const absl::Status& s, grpc::ServerContext* ctx);

}  // namespace jamba

#endif  // JAMBA_RPC_STAGE_ERROR_H_
