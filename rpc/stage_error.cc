#include "rpc/stage_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "rpc/grpc_status.h"

namespace jamba {
namespace {

constexpr char kPayloadUrl[] = "type.jamba.dev/failed-stage";

absl::Status WithStage(absl::Status s, const std::string& address) {
  s.SetPayload(kPayloadUrl, absl::Cord(address));
  return s;
}

}  // namespace

std::optional<std::string> FailedStage(const absl::Status& s) {
  absl::optional<absl::Cord> payload = s.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

absl::Status ForwardCallStatus(const grpc::ClientContext& ctx, const grpc::Status& status,
                               const std::string& address) {
  if (status.ok()) return absl::OkStatus();
  const auto& trailing = ctx.GetServerTrailingMetadata();
  auto it = trailing.find(kFailedStageMetadata);
  if (it != trailing.end()) {
    // A stage further down failed; its message already names it.
    return WithStage(FromGrpcStatus(status), std::string(it->second.data(), it->second.size()));
  }
  return WithStage(
      absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                   absl::StrCat("layer worker ", address, ": Forward: ", status.error_message())),
      address);
}

grpc::Status ToGrpcStatusWithStage(const absl::Status& s, grpc::ServerContext* ctx) {
  if (std::optional<std::string> stage = FailedStage(s); stage.has_value() && ctx != nullptr) {
    ctx->AddTrailingMetadata(kFailedStageMetadata, *stage);
  }
  return ToGrpcStatus(s);
}

}  // namespace jamba
