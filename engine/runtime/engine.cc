#include "engine/runtime/engine.h"

#include <algorithm>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const std::string& model_dir,
                                                       const EngineOptions& options,
                                                       Backend* backend) {
  LoadOptions load;
  load.weight_dtype = options.weight_dtype;
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
  if (options.max_sequences < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sequences must be >= 1, got ", options.max_sequences));
  }
  if (options.kv_block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_block_size must be >= 1, got ", options.kv_block_size));
  }
  if (options.max_context < 0 || options.kv_cache_tokens < 0) {
    return absl::InvalidArgumentError("max_context and kv_cache_tokens must be >= 0");
  }
  std::unique_ptr<Engine> e(new Engine());
  e->backend_ = backend;
  e->model_ = std::move(model);
  const ModelConfig& c = e->model_->config();
  const int64_t model_limit = c.max_position_embeddings > 0 ? c.max_position_embeddings : 1 << 20;
  e->max_context_ = options.max_context > 0 ? std::min(options.max_context, model_limit)
                                            : model_limit;
  e->max_sequences_ = options.max_sequences;

  if (e->model_->num_mamba_layers() > 0) {
    JAMBA_ASSIGN_OR_RETURN(
        e->mamba_pool_,
        MambaStatePool::Create(backend, e->model_->num_mamba_layers(), c.mamba_d_inner,
                               c.mamba_d_state, c.mamba_d_conv, options.max_sequences));
  }
  if (e->model_->num_attention_layers() > 0) {
    const int64_t tokens =
        options.kv_cache_tokens > 0
            ? options.kv_cache_tokens
            : options.max_sequences * std::min<int64_t>(e->max_context_, 4096);
    const int64_t blocks = KvCachePool::BlocksFor(tokens, options.kv_block_size);
    if (blocks > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_tokens too large: ", tokens));
    }
    JAMBA_ASSIGN_OR_RETURN(
        e->kv_pool_, KvCachePool::Create(backend, e->model_->num_attention_layers(),
                                         c.num_kv_heads, c.head_dim, options.kv_block_size,
                                         static_cast<int32_t>(blocks)));
  }
  e->workspace_ = std::make_unique<Workspace>(backend);
  return e;
}

absl::StatusOr<SequenceId> Engine::AddSequence() {
  if (static_cast<int32_t>(sequences_.size()) >= max_sequences_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", max_sequences_, " sequence slots are in use"));
  }
  Sequence seq;
  if (mamba_pool_ != nullptr) {
    JAMBA_ASSIGN_OR_RETURN(seq.mamba_slot, mamba_pool_->Allocate());
  }
  const SequenceId id = next_id_++;
  sequences_.emplace(id, std::move(seq));
  return id;
}

absl::Status Engine::RemoveSequence(SequenceId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  if (mamba_pool_ != nullptr) mamba_pool_->Free(it->second.mamba_slot);
  if (kv_pool_ != nullptr) kv_pool_->Release(&it->second.blocks);
  sequences_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Engine::SequenceLength(SequenceId id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  return it->second.length;
}

absl::StatusOr<StepOutput> Engine::Step(absl::Span<const StepItem> items) {
  if (items.empty()) return absl::InvalidArgumentError("empty batch");
  const ModelConfig& c = config();
  const int64_t vocab = c.vocab_size;

  // ---- Validate everything before any state changes. ------------------------------------
  std::vector<Sequence*> seqs(items.size());
  std::unordered_set<SequenceId> seen;
  int64_t n_tokens = 0, n_logit_rows = 0, blocks_needed = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const StepItem& item = items[i];
    auto it = sequences_.find(item.sequence);
    if (it == sequences_.end()) {
      return absl::NotFoundError(absl::StrCat("no sequence ", item.sequence));
    }
    if (!seen.insert(item.sequence).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", item.sequence, " appears twice in one step"));
    }
    if (item.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", item.sequence, ": no tokens to feed"));
    }
    for (size_t t = 0; t < item.tokens.size(); ++t) {
      if (item.tokens[t] < 0 || item.tokens[t] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", item.tokens[t],
                                                       " at position ", t,
                                                       " is outside the vocabulary [0, ",
                                                       vocab, ")"));
      }
    }
    Sequence& s = it->second;
    const int64_t new_length = s.length + static_cast<int64_t>(item.tokens.size());
    if (new_length > max_context_) {
      return absl::OutOfRangeError(absl::StrCat("sequence ", item.sequence, " would hold ",
                                                new_length, " tokens, over the context limit ",
                                                max_context_));
    }
    if (kv_pool_ != nullptr) {
      blocks_needed += std::max<int64_t>(
          0, KvCachePool::BlocksFor(new_length, kv_pool_->block_size()) -
                 static_cast<int64_t>(s.blocks.size()));
    }
    seqs[i] = &s;
    n_tokens += static_cast<int64_t>(item.tokens.size());
    n_logit_rows += item.logits == LogitsRows::kAll   ? static_cast<int64_t>(item.tokens.size())
                    : item.logits == LogitsRows::kLast ? 1
                                                       : 0;
  }
  if (n_tokens > (int64_t{1} << 30)) return absl::InvalidArgumentError("batch too large");
  if (kv_pool_ != nullptr && blocks_needed > kv_pool_->free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache: the step needs ", blocks_needed,
                                                     " more blocks, ", kv_pool_->free_blocks(),
                                                     " are free"));
  }

  // ---- Lay out the ragged batch and reserve KV blocks (cannot fail now). -----------------
  BatchLayout layout;
  layout.n_tokens = static_cast<int32_t>(n_tokens);
  layout.kv_block_size = kv_pool_ != nullptr ? kv_pool_->block_size() : 0;
  std::vector<int32_t> ids;  // [n_tokens] the batch's token ids
  std::vector<int32_t> rows;  // [n_logit_rows] batch rows whose logits are wanted
  ids.reserve(n_tokens);
  rows.reserve(n_logit_rows);
  StepOutput out;
  out.vocab = vocab;
  for (size_t i = 0; i < items.size(); ++i) {
    const StepItem& item = items[i];
    Sequence& s = *seqs[i];
    SeqSlice slice;
    slice.token_begin = static_cast<int32_t>(ids.size());
    slice.n_tokens = static_cast<int32_t>(item.tokens.size());
    slice.n_past = static_cast<int32_t>(s.length);
    slice.mamba_slot = s.mamba_slot;
    if (kv_pool_ != nullptr) {
      JAMBA_CHECK(kv_pool_->Reserve(&s.blocks, s.length + slice.n_tokens).ok());
      slice.kv_seq = static_cast<int32_t>(layout.block_tables.size());
      layout.block_tables.push_back(s.blocks);
    }
    layout.seqs.push_back(slice);
    ids.insert(ids.end(), item.tokens.begin(), item.tokens.end());
    out.row_begin.push_back(static_cast<int64_t>(rows.size()));
    if (item.logits == LogitsRows::kAll) {
      for (int32_t r = 0; r < slice.n_tokens; ++r) rows.push_back(slice.token_begin + r);
    } else if (item.logits == LogitsRows::kLast) {
      rows.push_back(slice.token_begin + slice.n_tokens - 1);
    }
    out.row_count.push_back(static_cast<int64_t>(rows.size()) - out.row_begin.back());
  }

  // ---- Forward. ------------------------------------------------------------------------
  workspace_->Reset();
  ForwardContext ctx{backend_, &layout, workspace_.get(), &c};
  Tensor ids_dev = workspace_->Take(DType::kI32, {n_tokens});  // [n] i32
  JAMBA_RETURN_IF_ERROR(backend_->Upload(ids.data(), ids.size() * sizeof(int32_t), ids_dev));
  Tensor hidden = workspace_->Take(DType::kF32, {n_tokens, c.hidden_size});  // [n, H] f32
  model_->Embed(ctx, ids_dev, hidden);
  model_->ForwardLayers(ctx, StatePools{mamba_pool_.get(), kv_pool_.get()}, hidden);
  if (!rows.empty()) {
    const int64_t m = static_cast<int64_t>(rows.size());
    Tensor rows_dev = workspace_->Take(DType::kI32, {m});  // [m] i32
    JAMBA_RETURN_IF_ERROR(backend_->Upload(rows.data(), rows.size() * sizeof(int32_t), rows_dev));
    Tensor logits = workspace_->Take(DType::kF32, {m, vocab});  // [m, V] f32
    model_->Logits(ctx, hidden, rows_dev, logits);
    out.logits.resize(static_cast<size_t>(m * vocab));
    JAMBA_RETURN_IF_ERROR(backend_->Download(logits, out.logits.data()));
  } else {
    JAMBA_RETURN_IF_ERROR(backend_->Synchronize());
  }
  for (size_t i = 0; i < items.size(); ++i) {
    seqs[i]->length += static_cast<int64_t>(items[i].tokens.size());
  }
  return out;
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.live_sequences = static_cast<int32_t>(sequences_.size());
  if (mamba_pool_ != nullptr) {
    s.mamba_slots_used = mamba_pool_->used();
    s.mamba_slots_total = mamba_pool_->capacity();
    s.mamba_bytes_per_sequence = mamba_pool_->BytesPerSequence();
  }
  if (kv_pool_ != nullptr) {
    s.kv_blocks_used = kv_pool_->used_blocks();
    s.kv_blocks_total = kv_pool_->num_blocks();
    s.kv_bytes_per_token = kv_pool_->BytesPerToken();
  }
  s.weight_bytes = model_->weight_bytes();
  return s;
}

}  // namespace jamba
