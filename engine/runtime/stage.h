// One pipeline stage: a model shard (a contiguous layer range, with or without the embedding
// and the head), the state pools of its layers, and the sequences whose state they hold.
// A layer worker serves one Stage; the single-process Engine is a Stage holding the whole
// model. Sequence ids are chosen by the caller (the gateway), so every stage of a pipeline
// knows a sequence by the same id.
//
// Forward() runs a ragged batch: each item feeds n_tokens rows of one sequence (a prefill
// chunk or one decode token). Input is token ids for a stage with the embedding, activations
// otherwise; output is activations for the next stage, or logits for a stage with the head.
// Everything is validated before any state changes, so a bad batch fails without touching
// another sequence. If a forward fails midway (an expert worker unreachable), the batch's
// sequences are marked lost: their state is partly updated, and further steps on them fail
// with FailedPrecondition until the caller releases them (and rebuilds from its token log).
//
// A forward can also be run in steps (Begin, Advance, Finish), so that several batches of
// disjoint sequences are in progress at once and one computes while another's MoE layer waits
// for expert workers (layer-worker/stage_runner.h). A sequence is in at most one open pass.
//
// Not thread-safe: one thread at a time drives a Stage (the backend is one stream).
#ifndef JAMBA_ENGINE_RUNTIME_STAGE_H_
#define JAMBA_ENGINE_RUNTIME_STAGE_H_

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/blocks/expert_dispatcher.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "engine/state/kv_cache_pool.h"
#include "engine/state/mamba_state_pool.h"
#include "kernels/backend.h"
#include "kernels/row_sampling.h"

namespace jamba {

using SequenceId = int64_t;

// Which of an item's rows the head computes: none, the last row's logits, every row's logits,
// or only the token sampled from the last row on the device (StageItem::sampling; only the id
// is copied back: for requests without repetition penalty or logprobs).
enum class LogitsRows { kNone, kLast, kAll, kLastToken };

struct StageOptions {
  int32_t max_sequences = 16;  // live sequences at once (= Mamba state slots)
  int32_t kv_block_size = 16;  // token positions per KV block
  // Token positions of KV cache over all sequences; 0: max_sequences * min(max_context, 4096).
  int64_t kv_cache_tokens = 0;
  // Longest sequence (prompt + generated); 0: the model's max_position_embeddings, or 1 << 20
  // for models without a limit (Mamba).
  int64_t max_context = 0;
  // Computes the experts the shard does not hold (not owned; must outlive the stage). Null:
  // every expert a token is routed to must be held.
  ExpertDispatcher* experts = nullptr;
  // Measure the time spent in each kind of block (StageStats::block_seconds); synchronizes
  // the backend around every block.
  bool time_blocks = false;
};

struct StageItem {
  SequenceId sequence = 0;
  int32_t n_tokens = 0;  // >= 1 rows of this sequence, in batch order
  // Tokens the caller believes the sequence has absorbed; a stage whose state disagrees fails
  // the batch (FailedPrecondition) instead of computing garbage. -1: not checked.
  int64_t n_past = -1;
  LogitsRows logits = LogitsRows::kNone;  // read by a stage with the head only
  // For kLastToken: how the token is drawn (default: greedy); must satisfy RowSamplingValid.
  RowSampling sampling;
};

// Exactly one is non-empty: token_ids [n_tokens] i32 for a stage with the embedding, hidden
// [n_tokens, hidden_size] f32 (row-major) for any other. Both are borrowed for the call.
struct StageInput {
  absl::Span<const int32_t> token_ids;
  absl::Span<const float> hidden;
};

// Logits of one forward, on the host: item i's rows are rows [row_begin[i], row_begin[i] +
// row_count[i]) of `logits` [rows, vocab] f32 (row r of an item = its r-th token for kAll).
struct StepOutput {
  int64_t vocab = 0;
  std::vector<float> logits;
  std::vector<int64_t> row_begin;
  std::vector<int64_t> row_count;  // 0 for kNone and kLastToken items
  // Per item: the token sampled from its last row for kLastToken items, -1 for the others.
  std::vector<int32_t> token;

  absl::Span<const float> Row(size_t item, int64_t r) const {
    return absl::MakeConstSpan(logits.data() + (row_begin[item] + r) * vocab, vocab);
  }
  absl::Span<const float> Last(size_t item) const { return Row(item, row_count[item] - 1); }
};

struct StageOutput {
  std::vector<float> hidden;  // [n_tokens, hidden_size] f32; stages without the head
  StepOutput logits;          // stages with the head
};

struct StageStats {
  int32_t live_sequences = 0;
  int32_t max_sequences = 0;
  int32_t mamba_slots_used = 0, mamba_slots_total = 0;
  int32_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t kv_blocks_reserved = 0;  // set aside by reservations (used or not)
  int32_t kv_block_size = 0;
  int64_t kv_bytes_per_token = 0;        // this stage's attention layers, K + V
  int64_t mamba_bytes_per_sequence = 0;  // this stage's Mamba layers, conv + SSM
  int64_t weight_bytes = 0;
  BlockTimes block_seconds;  // if StageOptions::time_blocks
};

// A batch whose forward is in progress (Stage::Begin .. Finish or Abort); owned by the caller,
// which must end it (Finish or Abort) before the Stage is destroyed.
class StagePass {
 public:
  ~StagePass();
  // Whether the pass waits for experts (after Stage::Advance returned false): compute every
  // item's `y`, on any thread, then call Advance again.
  int64_t expert_layer() const { return layers_->expert_layer(); }
  absl::Span<const ExpertWork> expert_work() const { return layers_->expert_work(); }
  int64_t n_tokens() const { return layout_.n_tokens; }

 private:
  friend class Stage;
  StagePass() = default;

  std::vector<StageItem> items_;
  std::vector<SequenceId> ids_;  // items' sequences, marked busy in the Stage
  BatchLayout layout_;
  std::unique_ptr<Workspace> workspace_;  // the pass's own scratch, back to the Stage at the end
  Tensor hidden_;                         // [n_tokens, H] f32 in workspace_
  std::unique_ptr<LayerPass> layers_;
  BlockTimes times_;
  bool ended_ = false;
  // Head rows: logit rows, then sampled-token rows (with their items and parameters).
  std::vector<int32_t> rows_, token_rows_;
  std::vector<size_t> token_items_;
  std::vector<RowSampling> token_sampling_;
  StepOutput logits_;  // row_begin / row_count / token filled at Begin
};

class Stage {
 public:
  static absl::StatusOr<std::unique_ptr<Stage>> Create(std::unique_ptr<Model> model,
                                                       const StageOptions& options,
                                                       Backend* backend);

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  int64_t max_context() const { return max_context_; }

  // Creates empty sequences. All or nothing: InvalidArgument for an id given twice,
  // AlreadyExists for a live id, ResourceExhausted when max_sequences would be exceeded.
  // `reserve_tokens` (empty, or one per id) sets aside KV blocks for that many positions of
  // each sequence until it is removed: ResourceExhausted when the blocks neither in use nor
  // promised to other reservations do not suffice, so callers that each plan with the whole
  // cache cannot oversubscribe it. A reserved sequence always finds its blocks: a forward
  // whose sequences would take blocks promised to others' reservations is refused.
  absl::Status AddSequences(absl::Span<const SequenceId> ids,
                            absl::Span<const int64_t> reserve_tokens = {});
  // Frees the sequences' state; unknown ids are skipped. Returns how many were live.
  int RemoveSequences(absl::Span<const SequenceId> ids);
  // Tokens absorbed so far; NotFound for unknown ids.
  absl::StatusOr<int64_t> SequenceLength(SequenceId id) const;

  // Runs one forward over the items' rows. Errors (nothing has changed when one is returned,
  // except as the header comment says for a failure inside the layers): InvalidArgument for an
  // empty batch or item, a sequence twice, an input of the wrong kind or size, token ids
  // outside [0, vocab); NotFound for an unknown sequence; FailedPrecondition for an n_past
  // mismatch or a lost sequence; OutOfRange when a sequence would exceed max_context;
  // ResourceExhausted when the KV cache lacks free blocks for the whole batch; the expert
  // dispatcher's error when an MoE layer fails.
  absl::StatusOr<StageOutput> Forward(absl::Span<const StageItem> items, const StageInput& input);

  // Forward in steps. Begin validates (the errors of Forward, plus FailedPrecondition for a
  // sequence in another open pass) and reserves KV blocks; the input must stay valid until
  // the pass ends (Finish or Abort). Advance runs layers until done (true) or until the pass waits
  // for experts (false; see StagePass). Finish computes the head and ends the pass; Abort ends a
  // pass whose experts failed (its sequences are marked lost, as a failed Forward does).
  // After an error from Advance or Finish, the pass is already ended.
  absl::StatusOr<std::unique_ptr<StagePass>> Begin(absl::Span<const StageItem> items,
                                                   const StageInput& input);
  absl::StatusOr<bool> Advance(StagePass& pass);
  absl::StatusOr<StageOutput> Finish(StagePass& pass);
  void Abort(StagePass& pass);

  StageStats Stats() const;

 private:
  struct Sequence {
    int64_t length = 0;
    int32_t mamba_slot = -1;
    std::vector<int32_t> blocks;  // KV block table
    bool lost = false;            // a forward failed midway; state is garbage
    bool busy = false;            // in an open StagePass
    bool released = false;        // removed while busy: freed when its pass ends
    int64_t reserved_blocks = 0;  // KV blocks set aside for it (AddSequences' reservation)
  };

  void Free(std::unordered_map<SequenceId, Sequence>::iterator it);
  // KV blocks the live sequences' reservations still promise (reserved, not yet taken).
  int64_t OutstandingReservations() const;

  // Ends a pass: its sequences leave it (lengths advanced if `ok`, else marked lost), its
  // workspace returns to the free list.
  void End(StagePass& pass, bool ok);

  Stage() = default;

  Backend* backend_ = nullptr;
  std::unique_ptr<Model> model_;
  ExpertDispatcher* experts_ = nullptr;
  bool time_blocks_ = false;
  BlockTimes block_seconds_;
  std::unique_ptr<MambaStatePool> mamba_pool_;               // null without Mamba layers
  std::unique_ptr<KvCachePool> kv_pool_;                     // null without attention layers
  std::vector<std::unique_ptr<Workspace>> free_workspaces_;  // one per open pass, reused
  int64_t max_context_ = 0;
  int32_t max_sequences_ = 0;
  int64_t reserved_blocks_ = 0;  // sum of the live sequences' reservations
  std::unordered_map<SequenceId, Sequence> sequences_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_STAGE_H_
