// The gateway's view of the layer workers: an ordered list of stages that together hold every
// layer of one checkpoint. Connect() checks the cluster before it serves: every stage reports
// the gateway's checkpoint fingerprint, the ranges are contiguous from layer 0 (with the
// embedding) to the last layer (with the head), and the KV block sizes agree. A forward sends
// the batch to stage 0 as token ids with the route through the other stages: each stage sends
// its activations straight to the next, and the last stage's logits or tokens come back
// through the chain of calls (chained unary calls rather than streams: each batch carries its
// own deadline and cancellation through every stage, a failure ends exactly the batches it
// touched and names its stage, and no stream state must be rebuilt when a stage restarts).
// Several forwards may be in flight at once (ForwardAsync).
#ifndef JAMBA_GATEWAY_PIPELINE_H_
#define JAMBA_GATEWAY_PIPELINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/config/model_config.h"
#include "gateway/executor.h"
#include "jamba/v1/layer_worker.grpc.pb.h"

namespace jamba {

struct PipelineOptions {
  absl::Duration connect_timeout = absl::Seconds(120);  // workers may still be loading
  absl::Duration call_timeout = absl::Seconds(120);     // one stage call
};

class Pipeline final : public SequenceExecutor {
 public:
  // Errors: Unavailable when a worker does not answer in time; FailedPrecondition naming the
  // worker when the cluster does not fit together (see above).
  static absl::StatusOr<std::unique_ptr<Pipeline>> Connect(
      const std::vector<std::string>& addresses, const ModelConfig& config,
      const std::string& fingerprint, const PipelineOptions& options);

  ExecutorLimits limits() const override { return limits_; }
  absl::Status Create(absl::Span<const SequenceId> ids,
                      absl::Span<const int64_t> reserve_tokens = {}) override;
  absl::Status Release(absl::Span<const SequenceId> ids) override;
  absl::StatusOr<StepOutput> Forward(absl::Span<const StageItem> items,
                                     absl::Span<const int32_t> token_ids) override;
  void ForwardAsync(std::vector<StageItem> items, std::vector<int32_t> token_ids,
                    ForwardDone done) override;
  // One batch per stage, so that every stage computes at once.
  int32_t DefaultDepth() const override { return static_cast<int32_t>(stubs_.size()); }

  // Fresh ShardInfo of every stage, in order (for ModelInfo and the tests' pool counters).
  absl::StatusOr<std::vector<v1::ShardInfoResponse>> ShardInfos() const;
  const std::vector<std::string>& addresses() const { return addresses_; }

 private:
  struct Call;

  Pipeline(const PipelineOptions& options) : options_(options) {}
  std::unique_ptr<Call> StartCall(absl::Span<const StageItem> items,
                                  absl::Span<const int32_t> token_ids) const;
  absl::StatusOr<StepOutput> FinishCall(Call& call, const grpc::Status& status) const;

  const PipelineOptions options_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<v1::LayerWorker::Stub>> stubs_;
  ExecutorLimits limits_;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_PIPELINE_H_
