#include "gateway/gateway.h"

#include <algorithm>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/model.h"
#include "gateway/local_executor.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Create(const GatewayConfig& config) {
  JAMBA_RETURN_IF_ERROR(ValidateSchedulerOptions(config.scheduler));
  std::unique_ptr<Gateway> g(new Gateway());
  if (std::filesystem::exists(std::filesystem::path(config.model_dir) / "tokenizer.json")) {
    JAMBA_ASSIGN_OR_RETURN(g->tokenizer_, Tokenizer::Load(config.model_dir));
  }
  std::vector<std::vector<std::string>> pipelines;
  if (!config.layer_workers.empty()) pipelines.push_back(config.layer_workers);
  for (const std::vector<std::string>& p : config.pipelines) {
    if (p.empty()) return absl::InvalidArgumentError("a pipeline without layer workers");
    pipelines.push_back(p);
  }
  if (pipelines.empty()) {
    JAMBA_ASSIGN_OR_RETURN(
        std::unique_ptr<Backend> backend,
        CreateBackend(config.device, BackendOptions{.matmul_precision = config.matmul_precision}));
    g->local_backend_ = backend.get();
    LoadOptions load;
    load.weight_dtype = config.weight_dtype;
    load.int8_experts = config.int8_experts;
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                           Model::Load(config.model_dir, load, backend.get()));
    g->config_ = model->config();
    g->fingerprint_ = model->fingerprint();
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Stage> stage,
                           Stage::Create(std::move(model), config.local, backend.get()));
    g->executors_.push_back(std::make_unique<LocalExecutor>(std::move(backend), std::move(stage)));
  } else {
    JAMBA_ASSIGN_OR_RETURN(g->checkpoint_, Checkpoint::Open(config.model_dir));
    g->config_ = g->checkpoint_->config();
    g->fingerprint_ = g->checkpoint_->fingerprint();
    for (size_t p = 0; p < pipelines.size(); ++p) {
      JAMBA_ASSIGN_OR_RETURN(
          std::unique_ptr<Pipeline> pipeline,
          Pipeline::Connect(pipelines[p], g->config_, g->fingerprint_, config.pipeline));
      if (p > 0) {
        const ExecutorLimits a = g->executors_.front()->limits(), b = pipeline->limits();
        if ((a.kv_blocks >= 0) != (b.kv_blocks >= 0) || a.kv_block_size != b.kv_block_size) {
          return absl::FailedPreconditionError(absl::StrCat(
              "pipeline ", p, " uses KV blocks of ", b.kv_block_size, " positions, pipeline 0 of ",
              a.kv_block_size, ": start all with the same"));
        }
      }
      g->pipelines_.push_back(pipeline.get());
      g->executors_.push_back(std::move(pipeline));
    }
  }
  int64_t max_context = INT64_MAX;
  std::vector<SequenceExecutor*> executors;
  for (const auto& e : g->executors_) {
    max_context = std::min(max_context, e->limits().max_context);
    executors.push_back(e.get());
  }
  g->scheduler_ = std::make_unique<Scheduler>(executors, config.scheduler, config.observer);
  g->service_ = std::make_unique<JambaService>(&g->config_, g->fingerprint_, g->tokenizer_.get(),
                                               g->scheduler_.get(), g->pipelines_, max_context);
  return g;
}

}  // namespace jamba
