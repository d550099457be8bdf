// Jamba (JambaForCausalLM): model_math.md section 1. Pre-norm residual layers; the mixer is
// attention (no positional encoding) or Mamba with learned dt/B/C norms; the FFN is a dense
// SwiGLU or a top-k MoE without renormalisation.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/arch/architecture.h"
#include "engine/model/blocks/attention.h"
#include "engine/model/blocks/mamba_mixer.h"
#include "engine/model/blocks/mlp.h"
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
    JAMBA_ASSIGN_OR_RETURN(out->final_norm, w.F32("model.final_layernorm.weight", {h}));
    if (c.tie_word_embeddings) {
      out->lm_head = out->embedding;
    } else {
      JAMBA_ASSIGN_OR_RETURN(out->lm_head, w.Matrix("lm_head.weight", {v, h}));
    }
  }
  return absl::OkStatus();
}

MoeNames JambaMoeNames(const WeightLoader&, int64_t i) {
  const std::string f = absl::StrCat("model.layers.", i, ".feed_forward.");
  return MoeNames{f + "router.weight", f + "experts.", "gate_proj", "up_proj", "down_proj",
                  f + "experts.gate_up_proj", f + "experts.down_proj"};
}

absl::Status LoadLayer(WeightLoader& w, const ModelConfig& c, int64_t i,
                       const ExpertFilter& want_expert, LayerWeights* out) {
  const int64_t h = c.hidden_size;
  const std::string p = absl::StrCat("model.layers.", i, ".");
  JAMBA_ASSIGN_OR_RETURN(out->input_norm, w.F32(p + "input_layernorm.weight", {h}));
  if (out->spec.mixer == MixerKind::kAttention) {
    JAMBA_RETURN_IF_ERROR(LoadAttention(w, c, p + "self_attn.", &out->attention));
  } else {
    JAMBA_RETURN_IF_ERROR(LoadMambaMixer(w, c, p + "mamba.", &out->mamba));
  }
  JAMBA_ASSIGN_OR_RETURN(out->ffn_norm, w.F32(p + "pre_ff_layernorm.weight", {h}));
  const std::string f = p + "feed_forward.";
  if (out->spec.ffn == FfnKind::kMoe) return LoadMoe(w, c, JambaMoeNames(w, i), want_expert, &out->moe);
  return LoadMlp(w, f + "gate_proj.weight", f + "up_proj.weight", f + "down_proj.weight",
                 c.intermediate_size, h, &out->mlp);
}

}  // namespace

const ArchitectureSpec& JambaArchitecture() {
  static const ArchitectureSpec spec{&ResolveConfig, &LoadGlobals, &LoadLayer, &JambaMoeNames};
  return spec;
}

}  // namespace jamba
