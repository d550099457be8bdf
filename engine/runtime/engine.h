// The single-process inference engine: one Stage holding the whole model (all layers,
// embedding and head) on one backend, with engine-chosen sequence ids.
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
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/model.h"
#include "engine/runtime/stage.h"
#include "kernels/backend.h"

namespace jamba {

struct EngineOptions {
  DType weight_dtype = DType::kF32;  // kF32 or kBF16 for the large matrices
  bool int8_experts = false;         // LoadOptions::int8_experts
  int32_t max_sequences = 16;        // live sequences at once (= Mamba state slots)
  int32_t kv_block_size = 16;        // token positions per KV block
  // Token positions of KV cache over all sequences; 0: max_sequences * min(max_context, 4096).
  int64_t kv_cache_tokens = 0;
  // Longest sequence (prompt + generated); 0: the model's max_position_embeddings, or 1 << 20
  // for models without a limit (Mamba).
  int64_t max_context = 0;
};

struct StepItem {
  SequenceId sequence = 0;
  absl::Span<const int32_t> tokens;  // >= 1 token ids, appended to the sequence in order
  LogitsRows logits = LogitsRows::kLast;
  RowSampling sampling;  // for kLastToken: how the token is drawn (default: greedy)
};

using EngineStats = StageStats;

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const std::string& model_dir,
                                                        const EngineOptions& options,
                                                        Backend* backend);
  // For callers that built the model themselves (e.g. the benchmark's random weights).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<Model> model,
                                                        const EngineOptions& options,
                                                        Backend* backend);

  const ModelConfig& config() const { return stage_->config(); }
  const Model& model() const { return stage_->model(); }
  int64_t vocab_size() const { return config().vocab_size; }
  int64_t max_context() const { return stage_->max_context(); }

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
  Engine() = default;

  std::unique_ptr<Stage> stage_;
  SequenceId next_id_ = 1;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_RUNTIME_ENGINE_H_
