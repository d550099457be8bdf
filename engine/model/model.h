// A loaded model shard: the weights of a contiguous range of layers (plus, optionally, the
// embedding and the final norm + LM head) and the forward pass over them. Stateless itself:
// per-sequence state lives in the pools passed to ForwardLayers, so one Model serves many
// sequences and the cluster's layer workers each hold one shard.
#ifndef JAMBA_ENGINE_MODEL_MODEL_H_
#define JAMBA_ENGINE_MODEL_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/model/blocks/forward_context.h"
#include "engine/model/blocks/moe.h"
#include "engine/model/model_weights.h"
#include "engine/state/kv_cache_pool.h"
#include "engine/state/mamba_state_pool.h"

namespace jamba {

struct ShardSpec {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // exclusive; -1: through the last layer
  // Default: the embedding iff the range starts at layer 0, the head iff it ends at the last.
  absl::optional<bool> embedding;
  absl::optional<bool> head;
  // Which experts of MoE layer `layer` to load; empty: all. Others are never read.
  std::function<bool(int64_t layer, int64_t expert)> want_expert;
  // Expert workers: load only the (wanted) experts of the range's MoE layers - no embedding,
  // head, mixers, norms, routers or dense MLPs. Such a model serves ExpertForward only.
  bool experts_only = false;
};

struct LoadOptions {
  DType weight_dtype = DType::kF32;  // large matrices: kF32 or kBF16
  // MoE expert matrices quantised per row to int8 at load (ExpertsInt8): about half the bytes
  // of bf16, dequantised inside the products (Backend::MatMulInt8).
  bool int8_experts = false;
  ShardSpec shard;
};

// The state pools of the layers a Model holds (either may be null when the shard has no layers
// of that kind).
struct StatePools {
  MambaStatePool* mamba = nullptr;
  KvCachePool* kv = nullptr;
};

class Model;

// One run of a shard's layers over a batch that can stop where an MoE layer waits for expert
// workers, so the caller can run another batch's layers meanwhile (a layer worker's
// micro-batches; MegaScale-Infer's ping-pong). Model::ForwardLayers is a LayerPass run to the
// end with ctx.experts computing each wait. The context, pools and hidden tensor are borrowed
// for the pass's life; between Advance calls nothing else may touch the batch's sequences or
// its workspace.
class LayerPass {
 public:
  LayerPass(const Model* model, const ForwardContext& ctx, const StatePools& pools,
            const Tensor& hidden);

  // Runs layers until the pass is done (true) or an MoE layer needs experts this shard does
  // not hold (false): then every item of expert_work() must have its `y` computed (rows of
  // MoE layer expert_layer()) before the next Advance. An error leaves the batch's state
  // partly updated (see ForwardLayers).
  absl::StatusOr<bool> Advance();
  int64_t expert_layer() const { return pending_.layer; }
  absl::Span<const ExpertWork> expert_work() const { return pending_.work; }

 private:
  const Model* model_;
  ForwardContext ctx_;
  StatePools pools_;
  Tensor hidden_;         // [n, H] f32, updated in place
  Tensor normed_;         // [n, H] f32 scratch
  Tensor branch_;         // [n, H] f32 scratch
  size_t next_ = 0;       // the next layer (index into the shard's layers) to run
  bool waiting_ = false;  // layer next_ - 1's MoE waits for pending_
  MoePending pending_;
  double moe_start_ = 0;  // steady-clock seconds when the waiting MoE block began (timing)
};

class Model {
 public:
  // Opens the checkpoint folder and loads the shard. Errors name the file and tensor.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir,
                                                     const LoadOptions& options, Backend* backend);

  // Loads the shard from an opened checkpoint (e.g. Checkpoint::Synthetic for benchmarks).
  static absl::StatusOr<std::unique_ptr<Model>> Load(std::unique_ptr<Checkpoint> checkpoint,
                                                     const LoadOptions& options, Backend* backend);

  const ModelConfig& config() const { return checkpoint_->config(); }
  // The checkpoint the weights were read from (tools re-export a synthetic one to a folder).
  Checkpoint* mutable_checkpoint() { return checkpoint_.get(); }
  const std::string& fingerprint() const { return checkpoint_->fingerprint(); }
  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }
  // Whether the shard embeds token ids (it starts the pipeline). The last shard of a model
  // with tied embeddings also holds the embedding matrix, as its lm_head, yet takes activations.
  bool has_embedding() const { return embeds_; }
  bool has_head() const { return Present(weights_.lm_head); }
  int64_t num_mamba_layers() const { return num_mamba_; }          // held by this shard
  int64_t num_attention_layers() const { return num_attention_; }  // held by this shard
  int64_t weight_bytes() const { return weight_bytes_; }
  int64_t num_parameters() const { return num_parameters_; }  // held by this shard
  const ModelWeights& weights() const { return weights_; }

  // hidden [n, H] f32 = embedding rows of ids [n] i32.
  void Embed(const ForwardContext& ctx, const Tensor& ids, const Tensor& hidden) const;
  // Runs the shard's layers over hidden [n, H] f32 in place, reading and updating the state
  // of every sequence of ctx.layout in `pools`. Fails only when an MoE layer cannot reach an
  // expert (see MoeForward); the batch's state is then partly updated and must be discarded.
  absl::Status ForwardLayers(const ForwardContext& ctx, const StatePools& pools,
                             const Tensor& hidden) const;
  // True if this shard holds expert `expert` of MoE layer `layer`.
  bool HoldsExpert(int64_t layer, int64_t expert) const;
  // out [n, H] f32 = expert `expert` of MoE layer `layer` applied to x [n, H] f32 (normalised
  // activations routed to it), unscaled by routing weights. The expert must be held.
  void ExpertForward(const ForwardContext& ctx, int64_t layer, int64_t expert, const Tensor& x,
                     const Tensor& out) const;
  // logits [m, V] f32 = lm_head(final_norm(hidden[rows])). rows [m] i32.
  void Logits(const ForwardContext& ctx, const Tensor& hidden, const Tensor& rows,
              const Tensor& logits) const;

 private:
  friend class LayerPass;
  Model() = default;

  std::unique_ptr<Checkpoint> checkpoint_;  // owns the mappings weights may point into
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  ModelWeights weights_;
  std::vector<int64_t> pool_index_;  // per held layer: its index in the Mamba or KV pool
  int64_t layer_begin_ = 0, layer_end_ = 0;
  int64_t num_mamba_ = 0, num_attention_ = 0;
  int64_t weight_bytes_ = 0;
  int64_t num_parameters_ = 0;
  bool experts_only_ = false;
  bool embeds_ = false;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_MODEL_H_
