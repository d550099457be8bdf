// Mixtral (MixtralForCausalLM): model_math.md section 3. Llama-style attention with RoPE and
// GQA, and a top-k MoE FFN with renormalised weights on every layer.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/arch/architecture.h"
#include "engine/model/blocks/attention.h"
#include "engine/model/blocks/moe.h"

namespace jamba {
namespace {

absl::Status ResolveConfig(Checkpoint&, ModelConfig*) { return absl::OkStatus(); }

absl::Status LoadGlobals(WeightLoader& w, const ModelConfig& c, bool embedding, bool head,
                         ModelWeights* out) {
  const int64_t v = c.vocab_size, h = c.hidden_size;
  if (embedding || (head && c.tie_word_embeddings)) {
    JAMBA_ASSIGN_OR_RETURN(out->embedding, w.Matrix("model.embed_tokens.weight", {v, h}));
  }
  if (head) {
    JAMBA_ASSIGN_OR_RETURN(out->final_norm, w.F32("model.norm.weight", {h}));
    if (c.tie_word_embeddings) {
      out->lm_head = out->embedding;
    } else {
      JAMBA_ASSIGN_OR_RETURN(out->lm_head, w.Matrix("lm_head.weight", {v, h}));
    }
  }
  return absl::OkStatus();
}

MoeNames MixtralMoeNames(const WeightLoader& w, int64_t i) {
  // Hub checkpoints: block_sparse_moe.{gate, experts.e.w1/w3/w2}; newer transformers saves
  // mlp.{gate, experts.gate_up_proj/down_proj}.
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const bool hub = w.Has(p + "block_sparse_moe.gate.weight");
  const std::string m = p + (hub ? "block_sparse_moe." : "mlp.");
  return MoeNames{m + "gate.weight", m + "experts.", "w1", "w3", "w2",
                  m + "experts.gate_up_proj", m + "experts.down_proj"};
}

absl::Status LoadLayer(WeightLoader& w, const ModelConfig& c, int64_t i,
                       const ExpertFilter& want_expert, LayerWeights* out) {
  const int64_t h = c.hidden_size;
  const std::string p = absl::StrCat("model.layers.", i, ".");
  JAMBA_ASSIGN_OR_RETURN(out->input_norm, w.F32(p + "input_layernorm.weight", {h}));
  JAMBA_RETURN_IF_ERROR(LoadAttention(w, c, p + "self_attn.", &out->attention));
  JAMBA_ASSIGN_OR_RETURN(out->ffn_norm, w.F32(p + "post_attention_layernorm.weight", {h}));
  return LoadMoe(w, c, MixtralMoeNames(w, i), want_expert, &out->moe);
}

}  // namespace

const ArchitectureSpec& MixtralArchitecture() {
  static const ArchitectureSpec spec{&ResolveConfig, &LoadGlobals, &LoadLayer, &MixtralMoeNames};
  return spec;
}

}  // namespace jamba
