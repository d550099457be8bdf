#include "rpc/channel.h"

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "rpc/server.h"

namespace jamba {

std::shared_ptr<grpc::Channel> MakeInternalChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Each process talks to each peer over one connection; without this, channels to the same
  // target created by different components would share a subchannel anyway, but a distinct
  // pool keeps a slow peer's stream from queueing behind another component's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace jamba
