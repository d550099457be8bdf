#include "engine/runtime/stage.h"

#include <algorithm>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<Stage>> Stage::Create(std::unique_ptr<Model> model,
                                                     const StageOptions& options,
                                                     Backend* backend) {
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
  std::unique_ptr<Stage> s(new Stage());
  s->backend_ = backend;
  s->model_ = std::move(model);
  s->experts_ = options.experts;
  s->time_blocks_ = options.time_blocks;
  const ModelConfig& c = s->model_->config();
  const int64_t model_limit = c.max_position_embeddings > 0 ? c.max_position_embeddings : 1 << 20;
  s->max_context_ =
      options.max_context > 0 ? std::min(options.max_context, model_limit) : model_limit;
  s->max_sequences_ = options.max_sequences;

  if (s->model_->num_mamba_layers() > 0) {
    JAMBA_ASSIGN_OR_RETURN(
        s->mamba_pool_,
        MambaStatePool::Create(backend, s->model_->num_mamba_layers(), c.mamba_d_inner,
                               c.mamba_d_state, c.mamba_d_conv, options.max_sequences));
  }
  if (s->model_->num_attention_layers() > 0) {
    const int64_t tokens = options.kv_cache_tokens > 0
                               ? options.kv_cache_tokens
                               : options.max_sequences * std::min<int64_t>(s->max_context_, 4096);
    const int64_t blocks = KvCachePool::BlocksFor(tokens, options.kv_block_size);
    if (blocks > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_tokens too large: ", tokens));
    }
    JAMBA_ASSIGN_OR_RETURN(
        s->kv_pool_,
        KvCachePool::Create(backend, s->model_->num_attention_layers(), c.num_kv_heads, c.head_dim,
                            options.kv_block_size, static_cast<int32_t>(blocks)));
  }
  return s;
}

absl::Status Stage::AddSequences(absl::Span<const SequenceId> ids,
                                 absl::Span<const int64_t> reserve_tokens) {
  if (!reserve_tokens.empty() && reserve_tokens.size() != ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("reserve_tokens: ", reserve_tokens.size(),
                                                   " values for ", ids.size(), " sequences"));
  }
  std::unordered_set<SequenceId> seen;
  for (SequenceId id : ids) {
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " given twice"));
    }
    if (sequences_.count(id) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " already exists"));
    }
  }
  int64_t reserve = 0;
  std::vector<int64_t> blocks(ids.size(), 0);
  for (size_t i = 0; i < reserve_tokens.size(); ++i) {
    if (reserve_tokens[i] < 0 || reserve_tokens[i] > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reserve_tokens[", i, "] = ", reserve_tokens[i], " is outside [0, ", max_context_, "]"));
    }
    if (kv_pool_ != nullptr) {
      blocks[i] = KvCachePool::BlocksFor(reserve_tokens[i], kv_pool_->block_size());
    }
    reserve += blocks[i];
  }
  // Capacity shortfalls last: ResourceExhausted means "retry later", so it must not hide a
  // request that is wrong.
  if (sequences_.size() + ids.size() > static_cast<size_t>(max_sequences_)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(ids.size(), " new sequences do not fit: ", sequences_.size(), " of ",
                     max_sequences_, " sequence slots are in use"));
  }
  if (kv_pool_ != nullptr && reserve > 0) {
    const int64_t unpromised = kv_pool_->free_blocks() - OutstandingReservations();
    if (reserve > unpromised) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV cache: ", reserve, " blocks to reserve, ", std::max<int64_t>(unpromised, 0), " of ",
          kv_pool_->num_blocks(),
          " neither used nor reserved (other gateways' sequences hold the rest); retry when "
          "some finish"));
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const SequenceId id = ids[i];
    Sequence seq;
    seq.reserved_blocks = blocks[i];
    reserved_blocks_ += blocks[i];
    if (mamba_pool_ != nullptr) {
      absl::StatusOr<int32_t> slot = mamba_pool_->Allocate();
      JAMBA_CHECK_MSG(slot.ok(), "Mamba slots are sized to max_sequences");
      seq.mamba_slot = *slot;
    }
    sequences_.emplace(id, std::move(seq));
  }
  return absl::OkStatus();
}

int64_t Stage::OutstandingReservations() const {
  int64_t outstanding = 0;
  for (const auto& [id, seq] : sequences_) {
    outstanding +=
        std::max<int64_t>(0, seq.reserved_blocks - static_cast<int64_t>(seq.blocks.size()));
  }
  return outstanding;
}

int Stage::RemoveSequences(absl::Span<const SequenceId> ids) {
  int removed = 0;
  for (SequenceId id : ids) {
    auto it = sequences_.find(id);
    if (it == sequences_.end() || it->second.released) continue;
    ++removed;
    if (it->second.busy) {
      // Its pass still computes on its state; the pass's end frees it.
      it->second.released = true;
      continue;
    }
    Free(it);
  }
  return removed;
}

void Stage::Free(std::unordered_map<SequenceId, Sequence>::iterator it) {
  reserved_blocks_ -= it->second.reserved_blocks;
  if (mamba_pool_ != nullptr) mamba_pool_->Free(it->second.mamba_slot);
  if (kv_pool_ != nullptr) kv_pool_->Release(&it->second.blocks);
  sequences_.erase(it);
}

absl::StatusOr<int64_t> Stage::SequenceLength(SequenceId id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end() || it->second.released) {
    return absl::NotFoundError(absl::StrCat("no sequence ", id));
  }
  return it->second.length;
}

StagePass::~StagePass() { JAMBA_CHECK_MSG(ended_, "a StagePass must be finished or aborted"); }

absl::StatusOr<StageOutput> Stage::Forward(absl::Span<const StageItem> items,
                                           const StageInput& input) {
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<StagePass> pass, Begin(items, input));
  while (true) {
    JAMBA_ASSIGN_OR_RETURN(bool done, Advance(*pass));
    if (done) break;
    absl::Status computed = experts_->Compute(pass->expert_layer(), pass->expert_work());
    if (!computed.ok()) {
      Abort(*pass);
      return computed;
    }
  }
  return Finish(*pass);
}

absl::StatusOr<std::unique_ptr<StagePass>> Stage::Begin(absl::Span<const StageItem> items,
                                                        const StageInput& input) {
  if (items.empty()) return absl::InvalidArgumentError("empty batch");
  const ModelConfig& c = config();
  const int64_t vocab = c.vocab_size, h = c.hidden_size;
  const bool head = model_->has_head();

  // ---- Validate everything before any state changes. ------------------------------------
  std::vector<Sequence*> seqs(items.size());
  std::unordered_set<SequenceId> seen;
  int64_t n_tokens = 0, n_logit_rows = 0, blocks_needed = 0, covered = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const StageItem& item = items[i];
    auto it = sequences_.find(item.sequence);
    if (it == sequences_.end() || it->second.released) {
      return absl::NotFoundError(absl::StrCat("no sequence ", item.sequence));
    }
    if (!seen.insert(item.sequence).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", item.sequence, " appears twice in one step"));
    }
    if (item.n_tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", item.sequence, ": no tokens to feed"));
    }
    if (item.logits == LogitsRows::kLastToken && !RowSamplingValid(item.sampling)) {
      const RowSampling& p = item.sampling;
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", item.sequence, ": sampling out of range (uniform ", p.uniform,
          " must be in [0, 1), temperature ", p.temperature, " >= 0 and finite, top_k ", p.top_k,
          " >= 0, top_p ", p.top_p, " in (0, 1], min_p ", p.min_p, " in [0, 1))"));
    }
    Sequence& s = it->second;
    if (s.busy) {
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", item.sequence, " is in another batch still in flight"));
    }
    if (s.lost) {
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", item.sequence,
                       ": its state was lost in a failed step; release and rebuild it"));
    }
    if (item.n_past >= 0 && item.n_past != s.length) {
      return absl::FailedPreconditionError(absl::StrCat("sequence ", item.sequence, ": n_past ",
                                                        item.n_past, " but this stage holds ",
                                                        s.length, " tokens"));
    }
    const int64_t new_length = s.length + item.n_tokens;
    if (new_length > max_context_) {
      return absl::OutOfRangeError(absl::StrCat("sequence ", item.sequence, " would hold ",
                                                new_length, " tokens, over the context limit ",
                                                max_context_));
    }
    if (kv_pool_ != nullptr) {
      const int64_t held = static_cast<int64_t>(s.blocks.size());
      const int64_t extra =
          std::max<int64_t>(0, KvCachePool::BlocksFor(new_length, kv_pool_->block_size()) - held);
      blocks_needed += extra;
      // The part of them the sequence's own reservation covers.
      covered += std::min(extra, std::max<int64_t>(0, s.reserved_blocks - held));
    }
    seqs[i] = &s;
    n_tokens += item.n_tokens;
    if (head) {
      n_logit_rows += item.logits == LogitsRows::kAll    ? item.n_tokens
                      : item.logits == LogitsRows::kNone ? 0
                                                         : 1;
    }
  }
  if (n_tokens > (int64_t{1} << 30)) return absl::InvalidArgumentError("batch too large");
  if (model_->has_embedding()) {
    if (!input.hidden.empty() || static_cast<int64_t>(input.token_ids.size()) != n_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat("input: this stage embeds tokens and needs ", n_tokens, " token ids, got ",
                       input.token_ids.size(), " ids and ", input.hidden.size(), " activations"));
    }
    for (size_t t = 0; t < input.token_ids.size(); ++t) {
      if (input.token_ids[t] < 0 || input.token_ids[t] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", input.token_ids[t], " at position ", t,
                         " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
  } else if (!input.token_ids.empty() ||
             static_cast<int64_t>(input.hidden.size()) != n_tokens * h) {
    return absl::InvalidArgumentError(
        absl::StrCat("input: this stage needs activations [", n_tokens, ", ", h, "], got ",
                     input.hidden.size(), " values and ", input.token_ids.size(), " token ids"));
  }
  // Blocks beyond a sequence's own reservation may not take what is promised to others.
  if (kv_pool_ != nullptr && blocks_needed > 0) {
    const int64_t promised = OutstandingReservations() - covered;
    if (blocks_needed > kv_pool_->free_blocks() ||
        kv_pool_->free_blocks() - blocks_needed < promised) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV cache: the step needs ", blocks_needed, " more blocks, ", kv_pool_->free_blocks(),
          " are free, ", promised, " of them promised to other sequences' reservations"));
    }
  }

  // ---- Lay out the ragged batch and reserve KV blocks (cannot fail now). -----------------
  std::unique_ptr<StagePass> pass(new StagePass());
  BatchLayout& layout = pass->layout_;
  layout.id = NextBatchLayoutId();
  layout.n_tokens = static_cast<int32_t>(n_tokens);
  layout.kv_block_size = kv_pool_ != nullptr ? kv_pool_->block_size() : 0;
  std::vector<int32_t>& rows = pass->rows_;               // batch rows whose logits are wanted
  std::vector<int32_t>& token_rows = pass->token_rows_;   // rows whose sampled token is wanted
  std::vector<size_t>& token_items = pass->token_items_;  // the item of each of token_rows
  std::vector<RowSampling>& token_sampling = pass->token_sampling_;  // how each is sampled
  rows.reserve(n_logit_rows);
  StepOutput& logits_out = pass->logits_;
  logits_out.vocab = vocab;
  int32_t token_begin = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const StageItem& item = items[i];
    Sequence& s = *seqs[i];
    SeqSlice slice;
    slice.token_begin = token_begin;
    slice.n_tokens = item.n_tokens;
    slice.n_past = static_cast<int32_t>(s.length);
    slice.mamba_slot = s.mamba_slot;
    if (kv_pool_ != nullptr) {
      JAMBA_CHECK(kv_pool_->Reserve(&s.blocks, s.length + slice.n_tokens).ok());
      slice.kv_seq = static_cast<int32_t>(layout.block_tables.size());
      layout.block_tables.push_back(s.blocks);
    }
    layout.seqs.push_back(slice);
    token_begin += item.n_tokens;
    if (!head) continue;
    logits_out.row_begin.push_back(static_cast<int64_t>(rows.size()));
    logits_out.token.push_back(-1);
    if (item.logits == LogitsRows::kAll) {
      for (int32_t r = 0; r < slice.n_tokens; ++r) rows.push_back(slice.token_begin + r);
    } else if (item.logits == LogitsRows::kLast) {
      rows.push_back(slice.token_begin + slice.n_tokens - 1);
    } else if (item.logits == LogitsRows::kLastToken) {
      token_rows.push_back(slice.token_begin + slice.n_tokens - 1);
      token_items.push_back(i);
      token_sampling.push_back(item.sampling);
    }
    logits_out.row_count.push_back(static_cast<int64_t>(rows.size()) - logits_out.row_begin.back());
  }

  pass->items_.assign(items.begin(), items.end());
  for (size_t i = 0; i < items.size(); ++i) {
    seqs[i]->busy = true;
    pass->ids_.push_back(items[i].sequence);
  }
  if (!free_workspaces_.empty()) {
    pass->workspace_ = std::move(free_workspaces_.back());
    free_workspaces_.pop_back();
  } else {
    pass->workspace_ = std::make_unique<Workspace>(backend_);
  }

  // ---- The input, and the layers' pass. --------------------------------------------------
  Workspace* ws = pass->workspace_.get();
  ws->Reset();
  ForwardContext ctx{backend_, &pass->layout_, ws,
                     &c,       experts_,       time_blocks_ ? &pass->times_ : nullptr};
  pass->hidden_ = ws->Take(DType::kF32, {n_tokens, h});  // [n, H] f32
  absl::Status uploaded;
  if (model_->has_embedding()) {
    Tensor ids_dev = ws->Take(DType::kI32, {n_tokens});  // [n] i32
    uploaded =
        backend_->Upload(input.token_ids.data(), input.token_ids.size() * sizeof(int32_t), ids_dev);
    if (uploaded.ok()) model_->Embed(ctx, ids_dev, pass->hidden_);
  } else {
    uploaded =
        backend_->Upload(input.hidden.data(), input.hidden.size() * sizeof(float), pass->hidden_);
  }
  if (!uploaded.ok()) {
    End(*pass, /*ok=*/false);
    return uploaded;
  }
  pass->layers_ = std::make_unique<LayerPass>(
      model_.get(), ctx, StatePools{mamba_pool_.get(), kv_pool_.get()}, pass->hidden_);
  return pass;
}

absl::StatusOr<bool> Stage::Advance(StagePass& pass) {
  JAMBA_CHECK(!pass.ended_);
  absl::StatusOr<bool> done = pass.layers_->Advance();
  if (!done.ok()) End(pass, /*ok=*/false);
  return done;
}

void Stage::Abort(StagePass& pass) {
  if (!pass.ended_) End(pass, /*ok=*/false);
}

void Stage::End(StagePass& pass, bool ok) {
  JAMBA_CHECK(!pass.ended_);
  pass.ended_ = true;
  for (size_t i = 0; i < pass.ids_.size(); ++i) {
    auto it = sequences_.find(pass.ids_[i]);
    JAMBA_CHECK(it != sequences_.end());  // RemoveSequences defers busy sequences to here
    it->second.busy = false;
    if (it->second.released) {
      Free(it);
    } else if (ok) {
      it->second.length += pass.items_[i].n_tokens;
    } else {
      it->second.lost = true;
    }
  }
  if (time_blocks_) {
    block_seconds_.attention += pass.times_.attention;
    block_seconds_.mamba += pass.times_.mamba;
    block_seconds_.mlp += pass.times_.mlp;
    block_seconds_.moe += pass.times_.moe;
  }
  pass.layers_.reset();
  free_workspaces_.push_back(std::move(pass.workspace_));
}

absl::StatusOr<StageOutput> Stage::Finish(StagePass& pass) {
  JAMBA_CHECK(!pass.ended_);
  const ModelConfig& c = config();
  const int64_t vocab = c.vocab_size, h = c.hidden_size;
  const int64_t n_tokens = pass.layout_.n_tokens;
  Workspace* ws = pass.workspace_.get();
  ForwardContext ctx{backend_, &pass.layout_, ws, &c, experts_, nullptr};
  const Tensor& hidden = pass.hidden_;
  StageOutput out;
  auto run = [&]() -> absl::Status {
    if (model_->has_head()) {
      out.logits = std::move(pass.logits_);
      const std::vector<int32_t>& rows = pass.rows_;
      const std::vector<int32_t>& token_rows = pass.token_rows_;
      // One head product for the logit rows and the token rows (after them); only the
      // former's logits and the latter's sampled ids come back to the host.
      const int64_t m = static_cast<int64_t>(rows.size());
      const int64_t mt = static_cast<int64_t>(token_rows.size());
      if (m + mt > 0) {
        std::vector<int32_t> all = rows;
        all.insert(all.end(), token_rows.begin(), token_rows.end());
        Tensor rows_dev = ws->Take(DType::kI32, {m + mt});  // [m + mt] i32
        JAMBA_RETURN_IF_ERROR(backend_->Upload(all.data(), all.size() * sizeof(int32_t), rows_dev));
        Tensor logits = ws->Take(DType::kF32, {m + mt, vocab});  // [m + mt, V] f32
        model_->Logits(ctx, hidden, rows_dev, logits);
        if (mt > 0) {
          Tensor tokens_dev = ws->Take(DType::kI32, {mt});  // [mt] i32
          backend_->SampleRows(logits.Rows(m, mt), pass.token_sampling_, tokens_dev);
          std::vector<int32_t> tokens(mt);
          JAMBA_RETURN_IF_ERROR(backend_->Download(tokens_dev, tokens.data()));
          for (int64_t j = 0; j < mt; ++j) out.logits.token[pass.token_items_[j]] = tokens[j];
        }
        if (m > 0) {
          out.logits.logits.resize(static_cast<size_t>(m * vocab));
          JAMBA_RETURN_IF_ERROR(backend_->Download(logits.Rows(0, m), out.logits.logits.data()));
        }
      } else {
        JAMBA_RETURN_IF_ERROR(backend_->Synchronize());
      }
    } else {
      out.hidden.resize(static_cast<size_t>(n_tokens * h));
      JAMBA_RETURN_IF_ERROR(backend_->Download(hidden, out.hidden.data()));
    }
    return absl::OkStatus();
  };
  absl::Status s = run();
  End(pass, s.ok());
  if (!s.ok()) return s;
  return out;
}

StageStats Stage::Stats() const {
  StageStats s;
  s.live_sequences = static_cast<int32_t>(sequences_.size());
  s.max_sequences = max_sequences_;
  if (mamba_pool_ != nullptr) {
    s.mamba_slots_used = mamba_pool_->used();
    s.mamba_slots_total = mamba_pool_->capacity();
    s.mamba_bytes_per_sequence = mamba_pool_->BytesPerSequence();
  }
  if (kv_pool_ != nullptr) {
    s.kv_blocks_used = kv_pool_->used_blocks();
    s.kv_blocks_total = kv_pool_->num_blocks();
    s.kv_blocks_reserved = reserved_blocks_;
    s.kv_block_size = kv_pool_->block_size();
    s.kv_bytes_per_token = kv_pool_->BytesPerToken();
  }
  s.weight_bytes = model_->weight_bytes();
  s.block_seconds = block_seconds_;
  return s;
}

}  // namespace jamba
