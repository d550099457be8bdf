#include "gateway/gateway.h"

#include <filesystem>

#include "absl/status/status.h"
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
  if (config.layer_workers.empty()) {
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
    g->executor_ = std::make_unique<LocalExecutor>(std::move(backend), std::move(stage));
  } else {
    JAMBA_ASSIGN_OR_RETURN(g->checkpoint_, Checkpoint::Open(config.model_dir));
    g->config_ = g->checkpoint_->config();
    g->fingerprint_ = g->checkpoint_->fingerprint();
    JAMBA_ASSIGN_OR_RETURN(
        std::unique_ptr<Pipeline> pipeline,
        Pipeline::Connect(config.layer_workers, g->config_, g->fingerprint_, config.pipeline));
    g->pipeline_ = pipeline.get();
    g->executor_ = std::move(pipeline);
  }
  const ExecutorLimits limits = g->executor_->limits();
  g->scheduler_ =
      std::make_unique<Scheduler>(g->executor_.get(), config.scheduler, config.observer);
  g->service_ =
      std::make_unique<JambaService>(&g->config_, g->fingerprint_, g->tokenizer_.get(),
                                     g->scheduler_.get(), g->pipeline_, limits.max_context);
  return g;
}

}  // namespace jamba
