// A gateway, assembled: the checkpoint's config and tokenizer, an executor (the layer workers'
// pipeline, or the whole model in this process), the scheduler, and the public service.
// Used by jamba-gateway's main() and by tests that run a cluster in one process.
#ifndef JAMBA_GATEWAY_GATEWAY_H_
#define JAMBA_GATEWAY_GATEWAY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/tokenizer/tokenizer.h"
#include "gateway/executor.h"
#include "gateway/jamba_service.h"
#include "gateway/pipeline.h"
#include "gateway/scheduler.h"
#include "kernels/backend.h"

namespace jamba {

struct GatewayConfig {
  std::string model_dir;  // config.json + tokenizer.json (weights only in local mode)
  // Layer worker addresses in stage order: one pipeline. Empty (and `pipelines` empty): run
  // the whole model in this process.
  std::vector<std::string> layer_workers;
  // Further pipelines (data parallel, each a full set of stages in order, all sharing the
  // expert workers); `layer_workers`, if given, is the first.
  std::vector<std::vector<std::string>> pipelines;
  PipelineOptions pipeline;
  SchedulerOptions scheduler;
  StageOptions local;                // local mode: pool sizes and context limit
  DType weight_dtype = DType::kF32;  // local mode
  bool int8_experts = false;         // local mode
  std::string device = "cpu";        // local mode: CreateBackend's device name
  MatMulPrecision matmul_precision = MatMulPrecision::kF32;  // local mode
  SchedulerObserver* observer = nullptr;  // e.g. metrics; must outlive the gateway
};

class Gateway {
 public:
  // Loads the config and tokenizer (a folder without tokenizer.json serves token ids only),
  // then connects to and checks the layer workers, or loads the model in local mode.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(const GatewayConfig& config);

  JambaService* service() { return service_.get(); }
  Scheduler* scheduler() { return scheduler_.get(); }
  const Pipeline* pipeline() const {  // the first; null in local mode
    return pipelines_.empty() ? nullptr : pipelines_.front();
  }
  const std::vector<const Pipeline*>& pipelines() const { return pipelines_; }
  SequenceExecutor* executor() { return executors_.front().get(); }  // the first pipeline's
  SequenceExecutor* executor(size_t p) { return executors_.at(p).get(); }
  const std::string& fingerprint() const { return fingerprint_; }
  // The compute backend in local mode (owned by the executor), null in pipeline mode.
  const Backend* local_backend() const { return local_backend_; }

 private:
  Gateway() = default;

  // Declaration order is destruction order reversed: the service goes first, then the
  // scheduler (which releases running sequences on the executor), then the executor.
  std::unique_ptr<Checkpoint> checkpoint_;  // config and fingerprint (pipeline mode)
  std::unique_ptr<Tokenizer> tokenizer_;    // null without tokenizer.json
  std::vector<std::unique_ptr<SequenceExecutor>> executors_;  // one per pipeline (or local)
  std::vector<const Pipeline*> pipelines_;                    // executors_ in pipeline mode
  const Backend* local_backend_ = nullptr;                    // in executors_, local mode
  ModelConfig config_;
  std::string fingerprint_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JambaService> service_;
};

}  // namespace jamba

#endif  // JAMBA_GATEWAY_GATEWAY_H_
