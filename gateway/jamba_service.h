// The public jamba.v1.Jamba service: request validation (INVALID_ARGUMENT naming the field),
// tokenization, submission to the scheduler, and streaming of its tokens to the client.
// Cancellation and deadlines are watched while streaming: a call the client abandons stops
// its sequence and frees its state on every stage at the scheduler's next step.
#ifndef JAMBA_GATEWAY_JAMBA_SERVICE_H_
#define JAMBA_GATEWAY_JAMBA_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"
#include "engine/runtime/completion.h"
#include "engine/tokenizer/tokenizer.h"
#include "gateway/pipeline.h"
#include "gateway/scheduler.h"
#include "jamba/v1/generate.grpc.pb.h"

namespace jamba {

class JambaService final : public v1::Jamba::Service {
 public:
  // `tokenizer` may be null (token-id prompts only); `pipeline` is null when the model runs in
  // the gateway's process. All must outlive the service.
  JambaService(const ModelConfig* config, std::string fingerprint, const Tokenizer* tokenizer,
               Scheduler* scheduler, std::vector<const Pipeline*> pipelines, int64_t max_context);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateChunk>* writer) override;
  grpc::Status GenerateUnary(grpc::ServerContext* context, const v1::GenerateRequest* request,
                             v1::GenerateResponse* response) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest* request,
                         v1::ModelInfoResponse* response) override;

  // Validates `request` and builds its Completion. InvalidArgument names the field
  // ("prompt.text: ...", "sampling.top_p: ...").
  absl::StatusOr<std::unique_ptr<Completion>> Prepare(const v1::GenerateRequest& request) const;
  absl::Status DescribeModel(v1::ModelInfoResponse* response) const;

 private:
  // Validates and submits `request`, then hands each update of its stream to `deliver`
  // (false: the client is gone) until the sequence ends, watching for cancellation.
  grpc::Status Serve(grpc::ServerContext* context, const v1::GenerateRequest& request,
                     const std::function<bool(const StreamUpdate&)>& deliver);

  const ModelConfig* config_;
  const std::string fingerprint_;
  const Tokenizer* tokenizer_;
  Scheduler* scheduler_;
  const std::vector<const Pipeline*> pipelines_;  // empty in local mode
  const int64_t max_context_;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_JAMBA_SERVICE_H_
