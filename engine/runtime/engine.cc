#include "engine/runtime/engine.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const std::string& model_dir,
                                                       const EngineOptions& options,
                                                       Backend* backend) {
  LoadOptions load;
  load.weight_dtype = options.weight_dtype;
  load.int8_experts = options.int8_experts;
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(model_dir, load, backend));
  return Create(std::move(model), options, backend);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<Model> model,
                                                       const EngineOptions& options,
                                                       Backend* backend) {
  if (!model->has_embedding() || !model->has_head() || model->layer_begin() != 0 ||
      model->layer_end() != model->config().num_layers) {
    return absl::InvalidArgumentError("the engine needs the whole model (all layers, head)");
  }
  StageOptions so;
  so.max_sequences = options.max_sequences;
  so.kv_block_size = options.kv_block_size;
  so.kv_cache_tokens = options.kv_cache_tokens;
  so.max_context = options.max_context;
  std::unique_ptr<Engine> e(new Engine());
  JAMBA_ASSIGN_OR_RETURN(e->stage_, Stage::Create(std::move(model), so, backend));
  return e;
}

absl::StatusOr<SequenceId> Engine::AddSequence() {
  const SequenceId id = next_id_;
  JAMBA_RETURN_IF_ERROR(stage_->AddSequences({id}));
  ++next_id_;
  return id;
}

absl::Status Engine::RemoveSequence(SequenceId id) {
  if (stage_->RemoveSequences({id}) == 0) {
    return absl::NotFoundError(absl::StrCat("no sequence ", id));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Engine::SequenceLength(SequenceId id) const {
  return stage_->SequenceLength(id);
}

absl::StatusOr<StepOutput> Engine::Step(absl::Span<const StepItem> items) {
  std::vector<StageItem> stage_items;
  std::vector<int32_t> ids;  // [n_tokens] the batch's token ids
  stage_items.reserve(items.size());
  for (const StepItem& item : items) {
    if (item.tokens.size() > (size_t{1} << 30)) {
      return absl::InvalidArgumentError("batch too large");
    }
    stage_items.push_back(StageItem{item.sequence, static_cast<int32_t>(item.tokens.size()),
                                    /*n_past=*/-1, item.logits, item.sampling});
    ids.insert(ids.end(), item.tokens.begin(), item.tokens.end());
  }
  StageInput input;
  input.token_ids = ids;
  JAMBA_ASSIGN_OR_RETURN(StageOutput out, stage_->Forward(stage_items, input));
  return std::move(out.logits);
}

EngineStats Engine::Stats() const { return stage_->Stats(); }

}  // namespace jamba
