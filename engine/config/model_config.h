// The architecture-neutral description of a model, parsed from a Hugging Face config.json.
//
// One struct covers Jamba, Mamba, FalconMamba and Mixtral: the per-layer schedule
// (`layers`) says which mixer and which feed-forward each layer has, so model code never
// hard-codes a schedule. Field names follow the math in shared/spec/model_math.md.
#ifndef JAMBA_ENGINE_CONFIG_MODEL_CONFIG_H_
#define JAMBA_ENGINE_CONFIG_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace jamba {

enum class Architecture { kJamba, kMamba, kFalconMamba, kMixtral };
const char* ArchitectureName(Architecture a);  // the HF model_type: "jamba", "mamba", ...

enum class MixerKind { kAttention, kMamba };
enum class FfnKind { kNone, kDense, kMoe };  // kNone: Mamba/FalconMamba blocks have no FFN

// How the Mamba mixer normalises dt (low rank), B and C after x_proj.
enum class MambaInnerNorm {
  kNone,        // Mamba
  kWeighted,    // Jamba: learned dt_/b_/c_layernorm weights, eps = rms_norm_eps
  kWeightless,  // FalconMamba: no weights, eps = mixer_rms_eps
};

struct LayerSpec {
  MixerKind mixer = MixerKind::kMamba;
  FfnKind ffn = FfnKind::kNone;
};

struct ModelConfig {
  Architecture arch = Architecture::kJamba;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // H
  int64_t intermediate_size = 0;  // I: dense MLP / per-expert width (Jamba, Mixtral)
  int64_t num_layers = 0;
  float rms_norm_eps = 1e-6f;     // every block/final RMSNorm
  bool tie_word_embeddings = false;

  // Attention (Jamba, Mixtral).
  int64_t num_heads = 0;     // nh
  int64_t num_kv_heads = 0;  // nkv (defaults to nh)
  int64_t head_dim = 0;      // hd (Mixtral may set it explicitly; otherwise H / nh)
  bool use_rope = false;     // Mixtral only
  double rope_theta = 1e6;
  int64_t max_position_embeddings = 0;  // the context limit we enforce (0 = unlimited)

  // Mamba mixer (Jamba, Mamba, FalconMamba).
  int64_t mamba_d_inner = 0;  // Di; for Mamba/FalconMamba the loader re-derives it from tensors
  int64_t mamba_d_state = 0;  // N
  int64_t mamba_d_conv = 0;   // K
  int64_t mamba_dt_rank = 0;  // R ("auto" resolved to ceil(H / 16))
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;  // in_proj / out_proj bias (Jamba mamba_proj_bias, Mamba use_bias)
  MambaInnerNorm mamba_inner_norm = MambaInnerNorm::kNone;
  float mixer_rms_eps = 1e-6f;   // eps of the inner norms (Jamba: rms_norm_eps)

  // Mixture of experts (Jamba, Mixtral).
  int64_t num_experts = 0;          // E (0 or 1: no MoE layers)
  int64_t num_experts_per_tok = 0;  // k
  bool moe_renormalize = false;     // Mixtral: true; Jamba: false

  // Tokens.
  int64_t bos_token_id = -1;  // -1: none
  int64_t pad_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  std::vector<LayerSpec> layers;  // size num_layers

  int64_t NumLayersOf(MixerKind k) const;
  int64_t NumMoeLayers() const;
};

// Parses the text of a config.json. `source` (a path) is used in error messages only.
// Errors: InvalidArgument naming the field, for unknown model_type, missing or mistyped
// fields, and inconsistent values (e.g. hidden_size not divisible by num_attention_heads,
// attn_layer_offset >= attn_layer_period, num_experts_per_tok > num_experts).
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);

// Reads and parses `dir`/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace jamba

#endif  // JAMBA_ENGINE_CONFIG_MODEL_CONFIG_H_
