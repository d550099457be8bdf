#include <string>

#include "absl/status/status.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/config/model_config.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jamba {
namespace {

constexpr char kConfigName[] = "fuzz/config.json";
constexpr char kIndexName[] = "fuzz/model.safetensors.index.json";

// What model code may rely on for any config that parsed (see model_config.h).
void CheckConfig(const ModelConfig& c) {
  constexpr int64_t kMaxDim = 2147483647;
  FUZZ_CHECK(c.num_layers >= 1 && static_cast<int64_t>(c.layers.size()) == c.num_layers);
  FUZZ_CHECK(c.vocab_size >= 1 && c.vocab_size <= kMaxDim);
  FUZZ_CHECK(c.hidden_size >= 1 && c.hidden_size <= kMaxDim);
  FUZZ_CHECK(c.rms_norm_eps > 0 && c.mixer_rms_eps > 0);
  for (int64_t id : c.eos_token_ids) FUZZ_CHECK(id >= 0 && id < c.vocab_size);
  FUZZ_CHECK(c.bos_token_id >= -1 && c.bos_token_id < c.vocab_size);
  FUZZ_CHECK(c.pad_token_id >= -1 && c.pad_token_id < c.vocab_size);

  const bool has_attention = c.NumLayersOf(MixerKind::kAttention) > 0;
  const bool has_mamba = c.NumLayersOf(MixerKind::kMamba) > 0;
  if (has_attention) {
    FUZZ_CHECK(c.num_heads >= 1 && c.num_kv_heads >= 1 && c.head_dim >= 1);
    FUZZ_CHECK(c.num_heads % c.num_kv_heads == 0);
    FUZZ_CHECK(c.num_heads * c.head_dim <= kMaxDim);
    if (c.use_rope) FUZZ_CHECK(c.head_dim % 2 == 0 && c.rope_theta > 0);
  }
  if (has_mamba) {
    FUZZ_CHECK(c.mamba_d_inner >= 1 && 2 * c.mamba_d_inner <= kMaxDim);
    FUZZ_CHECK(c.mamba_d_state >= 1 && c.mamba_d_conv >= 1 && c.mamba_dt_rank >= 1);
    FUZZ_CHECK(c.mamba_dt_rank + 2 * c.mamba_d_state <= kMaxDim);
  }
  for (const LayerSpec& l : c.layers) {
    if (l.ffn == FfnKind::kMoe) {
      FUZZ_CHECK(c.num_experts >= 1 && c.num_experts_per_tok >= 1);
      FUZZ_CHECK(c.num_experts_per_tok <= c.num_experts);
    }
    if (l.ffn != FfnKind::kNone) {
      FUZZ_CHECK(c.intermediate_size >= 1 && 2 * c.intermediate_size <= kMaxDim);
    }
  }
}

}  // namespace

void FuzzConfig(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<ModelConfig> config = ParseModelConfig(text, kConfigName);
  if (config.ok()) {
    CheckConfig(*config);
  } else {
    CheckParseError(config.status(), kConfigName);
  }

  absl::StatusOr<std::map<std::string, std::string>> index =
      ParseSafetensorsIndex(text, kIndexName);
  if (!index.ok()) {
    CheckParseError(index.status(), kIndexName);
    return;
  }
  FUZZ_CHECK(!index->empty());
  for (const auto& entry : *index) {
    const std::string& shard = entry.second;
    // Shards resolve inside the checkpoint folder.
    FUZZ_CHECK(!shard.empty() && shard != "." && shard != "..");
    FUZZ_CHECK(shard.find('/') == std::string::npos && shard.find('\0') == std::string::npos);
  }
}

}  // namespace jamba
