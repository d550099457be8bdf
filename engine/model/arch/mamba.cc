// Mamba (MambaForCausalLM) and FalconMamba (FalconMambaForCausalLM): model_math.md section 2.
// Each layer is norm -> Mamba mixer -> residual, with no FFN. FalconMamba adds weightless
// dt/B/C norms (config.mamba_inner_norm). Embeddings are usually tied.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/arch/architecture.h"
#include "engine/model/blocks/mamba_mixer.h"

namespace jamba {
namespace {

// The inner width is taken from the conv1d weight: falcon-mamba-7b's config says expand 16 but
// intermediate_size 8192, and only the tensors are authoritative (pitfall 16).
absl::Status ResolveConfig(Checkpoint& ckpt, ModelConfig* c) {
  if (c->num_layers < 1) return absl::OkStatus();
  const std::string name = "backbone.layers.0.mixer.conv1d.weight";
  if (!ckpt.Has(name)) return absl::OkStatus();  // the layer loader reports it as missing
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, ckpt.Get(name));
  if (t->shape.size() == 3 && t->shape[0] > 0) c->mamba_d_inner = t->shape[0];
  return absl::OkStatus();
}

std::string EmbeddingName(WeightLoader& w) {
  // Original state-spaces checkpoints call it `embedding`; transformers renames it.
  return w.Has("backbone.embedding.weight") ? "backbone.embedding.weight"
                                            : "backbone.embeddings.weight";
}

absl::Status LoadGlobals(WeightLoader& w, const ModelConfig& c, bool embedding, bool head,
                         ModelWeights* out) {
  const int64_t v = c.vocab_size, h = c.hidden_size;
  // A tied checkpoint may also lack lm_head.weight (mamba-130m-hf): use the embedding then.
  const bool tied = c.tie_word_embeddings || (!w.synthetic() && !w.Has("lm_head.weight"));
  if (embedding || (head && tied)) {
    JAMBA_ASSIGN_OR_RETURN(out->embedding, w.Matrix(EmbeddingName(w), {v, h}));
  }
  if (head) {
    JAMBA_ASSIGN_OR_RETURN(out->final_norm, w.F32("backbone.norm_f.weight", {h}));
    if (tied) {
      out->lm_head = out->embedding;
    } else {
      JAMBA_ASSIGN_OR_RETURN(out->lm_head, w.Matrix("lm_head.weight", {v, h}));
    }
  }
  return absl::OkStatus();
}

absl::Status LoadLayer(WeightLoader& w, const ModelConfig& c, int64_t i, const ExpertFilter&,
                       LayerWeights* out) {
  const std::string p = absl::StrCat("backbone.layers.", i, ".");
  JAMBA_ASSIGN_OR_RETURN(out->input_norm, w.F32(p + "norm.weight", {c.hidden_size}));
  return LoadMambaMixer(w, c, p + "mixer.", &out->mamba);
}

}  // namespace

const ArchitectureSpec& MambaArchitecture() {
  static const ArchitectureSpec spec{&ResolveConfig, &LoadGlobals, &LoadLayer, nullptr};
  return spec;
}

}  // namespace jamba
