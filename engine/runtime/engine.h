// The single-process inference engine: one model (all layers, embedding and head) on one
// backend, the state pools of its layers, and the sequences whose state they hold.
//
// A caller (jamba-run, the benchmark, the tests, later the gateway's local mode) creates
// sequences, then runs Step() over a ragged batch: each item feeds some tokens of one sequence
// (a prefill chunk or one decode token; both kinds mix freely in one step) and asks for the
// logits of none, the last, or all of its rows. The engine validates everything it is given
// (unknown sequence, token ids outside the vocabulary, context overflow, a sequence twice in
// one batch) before touching any state, so a bad item fails the step without corrupting
// another sequence. Capacity (KV blocks, Mamba slots) is all-or-nothing per call and reported
// as ResourceExhausted, so a scheduler can make a sequence wait.
//
// Not thread-safe: one thread drives an Engine (the backend is one stream).
#ifndef JAMBA_ENGINE_RUNTIME_ENGINE_H_
#define JAMBA_ENGINE_RUNTIME_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "engine/state/kv_cache_pool.h"
#include "engine/state/mamba_state_pool.h"
#include "kernels/backend.h"

namespace jamba {

struct EngineOptions {
  DType weight_dtype = DType::kF32;  // kF32 or kBF16 for the large matrices
  int32_t max_sequences = 16;        // live sequences at once (= Mamba state slots)
  int32_t kv_block_size = 16;        // token positions per KV block
  // Token positions of KV cache over all sequences; 0: max_sequences * min(max_context, 4096).
  int64_t kv_cache_tokens = 0;
  // Longest sequence (prompt + generated); 0: the model's max_position_embeddings, or 1 << 20
  // for models without a limit (Mamba).
  int64_t max_context = 0;
};

using SequenceId = int64_t;

enum class LogitsRows { kNone, kLast, kAll };

struct StepItem {
  SequenceId sequence = 0;
  absl::Span<const int32_t> tokens;  // >= 1 token ids, appended to the sequence in order
  LogitsRows logits = LogitsRows::kLast;
};

// Logits of one Step(), on the host: item i's rows are rows [row_begin[i], row_begin[i] +
// row_count[i]) of `logits` [rows, vocab] f32 (row r of an item = its r-th token for kAll).
struct StepOutput {
  int64_t vocab = 0;
  std::vector<float> logits;
  std::vector<int64_t> row_begin;
  std::vector<int64_t> row_count;

  absl::Span<const float> Row(size_t item, int64_t r) const {
    return absl::MakeConstSpan(logits.data() + (row_begin[item] + r) * vocab, vocab);
  }
  absl::Span<const float> Last(size_t item) const { return Row(item, row_count[item] - 1); }
};

struct EngineStats {
  int32_t live_sequences = 0;
  int32_t mamba_slots_used = 0, mamba_slots_total = 0;
  int32_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t kv_bytes_per_token = 0;      // all attention layers, K + V
  int64_t mamba_bytes_per_sequence = 0;  // all Mamba layers, conv + SSM
  int64_t weight_bytes = 0;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const std::string& model_dir,
                                                        const EngineOptions& options,
                                                        Backend* backend);
  // For callers that built the model themselves (e.g. the benchmark's random weights).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<Model> model,
                                                        const EngineOptions& options,
                                                        Backend* backend);

  const ModelConfig& config() const { return model_->config(); }
  const Model& model() const { return *model_; }
  int64_t vocab_size() const { return config().vocab_size; }
  int64_t max_context() const { return max_context_; }

  // A new, empty sequence; ResourceExhausted when max_sequences are live.
  absl::StatusOr<SequenceId> AddSequence();
  // Frees the sequence's state. Unknown ids are NotFound.
  absl::Status RemoveSequence(SequenceId id);
  // Tokens absorbed so far; NotFound for unknown ids.
  absl::StatusOr<int64_t> SequenceLength(SequenceId id) const;

  // Runs one forward over the items' tokens. Errors (nothing has changed when one is returned):
  // InvalidArgument for an empty batch or item, token ids outside [0, vocab), a sequence twice;
  // NotFound for an unknown sequence; OutOfRange when a sequence would exceed max_context;
  // ResourceExhausted when the KV cache lacks free blocks for the whole batch.
  absl::StatusOr<StepOutput> Step(absl::Span<const StepItem> items);

  EngineStats Stats() const;

 private:
  struct Sequence {
    int64_t length = 0;
    int32_t mamba_slot = -1;
    std::vector<int32_t> blocks;  // KV block table
  };

  Engine() = default;

  Backend* backend_ = nullptr;
  std::unique_ptr<Model> model_;
  std::unique_ptr<MambaStatePool> mamba_pool_;  // null without Mamba layers
  std::unique_ptr<KvCachePool> kv_pool_;        // null without attention layers
  std::unique_ptr<Workspace> workspace_;
  int64_t max_context_ = 0;
  int32_t max_sequences_ = 0;
  std::unordered_map<SequenceId, Sequence> sequences_;
  SequenceId next_id_ = 1;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_ENGINE_H_
