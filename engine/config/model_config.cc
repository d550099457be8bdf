#include "engine/config/model_config.h"

#include <sys/stat.h>

#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "engine/config/generation_config.h"
#include "engine/config/strict_json.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using Json = nlohmann::json;

// Every size must fit an int32 so kernels can index with 32-bit integers and products of two
// sizes never overflow int64.
constexpr int64_t kMaxDimension = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxLayers = 10000;

// Typed, non-throwing access to the fields of the config.json object. Absent fields take the
// Hugging Face default passed by the caller; a field present with the wrong JSON type (null
// included, unless the accessor says otherwise) is an error naming the field and the source.
class Fields {
 public:
  Fields(const Json& object, const std::string& source) : object_(object), source_(source) {}

  // The value of `key`, or nullptr when absent.
  const Json* Find(const std::string& key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  // Absent or null.
  bool IsUnset(const std::string& key) const {
    const Json* v = Find(key);
    return v == nullptr || v->is_null();
  }

  absl::Status Error(const std::string& key, const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", key, "': ", message));
  }

  // An integer in [lo, hi].
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t default_value, int64_t lo,
                              int64_t hi) const {
    const Json* v = Find(key);
    if (v == nullptr) return default_value;
    return IntValue(key, *v, lo, hi);
  }

  // A size: an integer in [1, kMaxDimension].
  absl::StatusOr<int64_t> Dim(const std::string& key, int64_t default_value) const {
    return Int(key, default_value, 1, kMaxDimension);
  }

  absl::StatusOr<bool> Bool(const std::string& key, bool default_value) const {
    const Json* v = Find(key);
    if (v == nullptr) return default_value;
    if (!v->is_boolean()) return Error(key, absl::StrCat("must be a boolean, got ", TypeOf(*v)));
    return v->get<bool>();
  }

  // A finite number > 0.
  absl::StatusOr<double> Positive(const std::string& key, double default_value) const {
    const Json* v = Find(key);
    if (v == nullptr) return default_value;
    return PositiveValue(key, *v);
  }

  absl::StatusOr<int64_t> IntValue(const std::string& key, const Json& v, int64_t lo,
                                   int64_t hi) const {
    int64_t x;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) {
        return Error(key, absl::StrCat("must be at most ", hi, ", got ", u));
      }
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else {
      return Error(key, absl::StrCat("must be an integer, got ", TypeOf(v)));
    }
    if (x < lo) {
      return Error(key, lo == 1 ? absl::StrCat("must be positive, got ", x)
                                : absl::StrCat("must be at least ", lo, ", got ", x));
    }
    if (x > hi) return Error(key, absl::StrCat("must be at most ", hi, ", got ", x));
    return x;
  }

  absl::StatusOr<double> PositiveValue(const std::string& key, const Json& v) const {
    if (!v.is_number()) return Error(key, absl::StrCat("must be a number, got ", TypeOf(v)));
    double x = v.get<double>();
    if (!std::isfinite(x) || !(x > 0)) {
      return Error(key, absl::StrCat("must be a positive finite number, got ", x));
    }
    return x;
  }

  static std::string TypeOf(const Json& v) {
    if (v.is_number_float()) return "a non-integer number";
    if (v.is_number()) return "an integer";
    return v.type_name();
  }

 private:
  const Json& object_;
  const std::string& source_;
};

// A float-typed eps: positive and still positive after rounding to float.
absl::StatusOr<float> Eps(const Fields& f, const std::string& key, double default_value) {
  JAMBA_ASSIGN_OR_RETURN(double eps, f.Positive(key, default_value));
  float as_float = static_cast<float>(eps);
  if (!(as_float > 0) || !std::isfinite(as_float)) {
    return f.Error(key, absl::StrCat("is not representable as a positive float: ", eps));
  }
  return as_float;
}

// "auto" -> ceil(H / 16), else a positive integer.
absl::StatusOr<int64_t> DtRank(const Fields& f, const std::string& key, int64_t hidden) {
  const Json* v = f.Find(key);
  if (v == nullptr || (v->is_string() && v->get_ref<const std::string&>() == "auto")) {
    return (hidden + 15) / 16;
  }
  if (v->is_string()) {
    return f.Error(key, absl::StrCat("must be an integer or \"auto\", got ",
                                     QuoteForError(v->get_ref<const std::string&>())));
  }
  return f.IntValue(key, *v, 1, kMaxDimension);
}

// A token id, or -1 for null. Ids index the embedding table, so they must be < vocab_size.
absl::StatusOr<int64_t> TokenIdValue(const Fields& f, const std::string& key, const Json& v,
                                     int64_t vocab_size) {
  if (v.is_null()) return -1;
  JAMBA_ASSIGN_OR_RETURN(int64_t id, f.IntValue(key, v, 0, kMaxDimension));
  if (id >= vocab_size) {
    return f.Error(key, absl::StrCat("token id ", id, " is outside the vocabulary (vocab_size ",
                                     vocab_size, ")"));
  }
  return id;
}

// Defaults are -1 for "none". Defaults are validated like explicit values, so a tiny config
// that omits the ids cannot end up with an id outside its vocabulary.
absl::Status ParseTokens(const Fields& f, int64_t default_bos, int64_t default_pad,
                         int64_t default_eos, ModelConfig& c) {
  auto value_or = [&](const char* key, int64_t default_value) {
    const Json* v = f.Find(key);
    if (v != nullptr) return *v;
    return default_value < 0 ? Json(nullptr) : Json(default_value);
  };
  JAMBA_ASSIGN_OR_RETURN(
      c.bos_token_id,
      TokenIdValue(f, "bos_token_id", value_or("bos_token_id", default_bos), c.vocab_size));
  JAMBA_ASSIGN_OR_RETURN(
      c.pad_token_id,
      TokenIdValue(f, "pad_token_id", value_or("pad_token_id", default_pad), c.vocab_size));
  c.eos_token_ids.clear();
  Json eos = value_or("eos_token_id", default_eos);
  if (eos.is_array()) {
    for (const Json& item : eos) {
      if (item.is_null()) return f.Error("eos_token_id", "list entries must be integers, got null");
      JAMBA_ASSIGN_OR_RETURN(int64_t id, TokenIdValue(f, "eos_token_id", item, c.vocab_size));
      c.eos_token_ids.push_back(id);
    }
  } else {
    JAMBA_ASSIGN_OR_RETURN(int64_t id, TokenIdValue(f, "eos_token_id", eos, c.vocab_size));
    if (id >= 0) c.eos_token_ids.push_back(id);
  }
  return absl::OkStatus();
}

// The engine implements SiLU only (all four families use it).
absl::Status CheckActivation(const Fields& f) {
  const Json* v = f.Find("hidden_act");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) {
    return f.Error("hidden_act", absl::StrCat("must be a string, got ", Fields::TypeOf(*v)));
  }
  const std::string& act = v->get_ref<const std::string&>();
  if (act != "silu" && act != "swish") {
    return f.Error("hidden_act",
                   absl::StrCat("unsupported activation ", QuoteForError(act), " (only silu)"));
  }
  return absl::OkStatus();
}

// nh, nkv (null -> nh) and the divisibility GQA needs.
absl::Status ParseHeads(const Fields& f, int64_t default_kv, ModelConfig& c) {
  JAMBA_ASSIGN_OR_RETURN(c.num_heads, f.Dim("num_attention_heads", 32));
  if (f.Find("num_key_value_heads") != nullptr && f.IsUnset("num_key_value_heads")) {
    c.num_kv_heads = c.num_heads;
  } else {
    JAMBA_ASSIGN_OR_RETURN(c.num_kv_heads, f.Dim("num_key_value_heads", default_kv));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return f.Error(
        "num_key_value_heads",
        absl::StrCat("num_attention_heads (", c.num_heads,
                     ") is not divisible by num_key_value_heads (", c.num_kv_heads, ")"));
  }
  return absl::OkStatus();
}

absl::Status DeriveHeadDim(const Fields& f, ModelConfig& c) {
  if (c.hidden_size % c.num_heads != 0) {
    return f.Error("num_attention_heads",
                   absl::StrCat("hidden_size (", c.hidden_size,
                                ") is not divisible by num_attention_heads (", c.num_heads, ")"));
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return absl::OkStatus();
}

// period >= 1, 0 <= offset < period.
absl::StatusOr<std::pair<int64_t, int64_t>> Schedule(const Fields& f, const std::string& period_key,
                                                     int64_t default_period,
                                                     const std::string& offset_key,
                                                     int64_t default_offset) {
  JAMBA_ASSIGN_OR_RETURN(int64_t period, f.Int(period_key, default_period, 1, kMaxLayers));
  JAMBA_ASSIGN_OR_RETURN(int64_t offset, f.Int(offset_key, default_offset, 0, kMaxLayers));
  if (offset >= period) {
    return f.Error(offset_key, absl::StrCat("must be smaller than ", period_key, " (", period,
                                            "), got ", offset));
  }
  return std::make_pair(period, offset);
}

// E >= 1 and, when routing happens, 1 <= k <= E.
absl::Status ParseExperts(const Fields& f, const char* key, const char* alias,
                          int64_t default_experts, bool routed_even_if_one, ModelConfig& c) {
  const char* used = key;
  if (f.Find(key) == nullptr && f.Find(alias) != nullptr) used = alias;
  JAMBA_ASSIGN_OR_RETURN(c.num_experts, f.Int(used, default_experts, 1, 1 << 16));
  JAMBA_ASSIGN_OR_RETURN(c.num_experts_per_tok,
                         f.Int("num_experts_per_tok", 2, std::numeric_limits<int64_t>::min(),
                               std::numeric_limits<int64_t>::max()));
  if (c.num_experts > 1 || routed_even_if_one) {
    if (c.num_experts_per_tok < 1) {
      return f.Error("num_experts_per_tok",
                     absl::StrCat("must be positive, got ", c.num_experts_per_tok));
    }
    if (c.num_experts_per_tok > c.num_experts) {
      return f.Error("num_experts_per_tok",
                     absl::StrCat("must be at most ", used, " (", c.num_experts, "), got ",
                                  c.num_experts_per_tok));
    }
  }
  return absl::OkStatus();
}

// Sizes derived from two fields must still fit kMaxDimension (they become tensor dims).
absl::Status CheckDerived(const Fields& f, const std::string& key, const std::string& what,
                          int64_t value) {
  if (value > kMaxDimension) {
    return f.Error(key, absl::StrCat(what, " = ", value, " exceeds ", kMaxDimension));
  }
  return absl::OkStatus();
}

// `d_inner_key`, `d_state_key`: the config's names for Di and N (they differ per family).
absl::Status CheckMambaDerived(const Fields& f, const std::string& d_inner_key,
                               const std::string& d_state_key, const ModelConfig& c) {
  JAMBA_RETURN_IF_ERROR(CheckDerived(f, d_inner_key, "2 * d_inner", 2 * c.mamba_d_inner));
  return CheckDerived(f, d_state_key, "dt_rank + 2 * d_state",
                      c.mamba_dt_rank + 2 * c.mamba_d_state);
}

absl::Status ParseJamba(const Fields& f, ModelConfig& c) {
  JAMBA_ASSIGN_OR_RETURN(c.vocab_size, f.Dim("vocab_size", 65536));
  JAMBA_ASSIGN_OR_RETURN(c.hidden_size, f.Dim("hidden_size", 4096));
  JAMBA_ASSIGN_OR_RETURN(c.intermediate_size, f.Dim("intermediate_size", 14336));
  JAMBA_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", 32, 1, kMaxLayers));
  JAMBA_ASSIGN_OR_RETURN(c.rms_norm_eps, Eps(f, "rms_norm_eps", 1e-6));
  JAMBA_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  JAMBA_ASSIGN_OR_RETURN(c.max_position_embeddings,
                         f.Int("max_position_embeddings", 262144, 0, kMaxDimension));
  JAMBA_RETURN_IF_ERROR(CheckActivation(f));

  JAMBA_RETURN_IF_ERROR(ParseHeads(f, 8, c));
  JAMBA_RETURN_IF_ERROR(DeriveHeadDim(f, c));
  c.use_rope = false;

  JAMBA_ASSIGN_OR_RETURN(c.mamba_d_state, f.Dim("mamba_d_state", 16));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_d_conv, f.Dim("mamba_d_conv", 4));
  JAMBA_ASSIGN_OR_RETURN(int64_t expand, f.Dim("mamba_expand", 2));
  c.mamba_d_inner = expand * c.hidden_size;  // both <= 2^31: no overflow
  JAMBA_RETURN_IF_ERROR(
      CheckDerived(f, "mamba_expand", "mamba_expand * hidden_size", c.mamba_d_inner));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_dt_rank, DtRank(f, "mamba_dt_rank", c.hidden_size));
  JAMBA_RETURN_IF_ERROR(CheckMambaDerived(f, "mamba_expand", "mamba_d_state", c));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_conv_bias, f.Bool("mamba_conv_bias", true));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_proj_bias, f.Bool("mamba_proj_bias", false));
  c.mamba_inner_norm = MambaInnerNorm::kWeighted;
  c.mixer_rms_eps = c.rms_norm_eps;

  JAMBA_RETURN_IF_ERROR(ParseExperts(f, "num_experts", "num_local_experts", 16,
                                     /*routed_even_if_one=*/false, c));
  c.moe_renormalize = false;
  JAMBA_RETURN_IF_ERROR(
      CheckDerived(f, "intermediate_size", "2 * intermediate_size", 2 * c.intermediate_size));

  JAMBA_ASSIGN_OR_RETURN(auto attn, Schedule(f, "attn_layer_period", 8, "attn_layer_offset", 4));
  JAMBA_ASSIGN_OR_RETURN(auto expert,
                         Schedule(f, "expert_layer_period", 2, "expert_layer_offset", 1));

  // Newer configs may list the mixer of every layer; it then replaces period/offset.
  std::vector<MixerKind> mixers(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    mixers[i] = i % attn.first == attn.second ? MixerKind::kAttention : MixerKind::kMamba;
  }
  if (!f.IsUnset("layer_types")) {
    const Json& types = *f.Find("layer_types");
    if (!types.is_array()) {
      return f.Error("layer_types", absl::StrCat("must be a list, got ", Fields::TypeOf(types)));
    }
    if (static_cast<int64_t>(types.size()) != c.num_layers) {
      return f.Error(
          "layer_types",
          absl::StrCat("has ", types.size(), " entries, but num_hidden_layers is ", c.num_layers));
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const Json& t = types[static_cast<size_t>(i)];
      const std::string* name = t.is_string() ? &t.get_ref<const std::string&>() : nullptr;
      if (name != nullptr && (*name == "attention" || *name == "full_attention")) {
        mixers[i] = MixerKind::kAttention;
      } else if (name != nullptr && (*name == "mamba" || *name == "linear_attention")) {
        mixers[i] = MixerKind::kMamba;
      } else {
        return f.Error("layer_types",
                       absl::StrCat("entry ", i, " must be \"attention\" or \"mamba\", got ",
                                    name != nullptr ? QuoteForError(*name) : Fields::TypeOf(t)));
      }
    }
  }
  c.layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    c.layers[i].mixer = mixers[i];
    bool moe = c.num_experts > 1 && i % expert.first == expert.second;
    c.layers[i].ffn = moe ? FfnKind::kMoe : FfnKind::kDense;
  }
  return ParseTokens(f, /*bos=*/1, /*pad=*/0, /*eos=*/2, c);
}

absl::Status ParseMamba(const Fields& f, bool falcon, ModelConfig& c) {
  JAMBA_ASSIGN_OR_RETURN(c.vocab_size, f.Dim("vocab_size", 50280));
  JAMBA_ASSIGN_OR_RETURN(c.hidden_size, f.Dim("hidden_size", 768));
  JAMBA_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", 32, 1, kMaxLayers));
  JAMBA_ASSIGN_OR_RETURN(c.rms_norm_eps, Eps(f, "layer_norm_epsilon", 1e-5));
  JAMBA_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  JAMBA_RETURN_IF_ERROR(CheckActivation(f));
  c.max_position_embeddings = 0;

  JAMBA_ASSIGN_OR_RETURN(c.mamba_d_state, f.Dim("state_size", 16));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_d_conv, f.Dim("conv_kernel", 4));
  // HF sets intermediate_size = int(expand * H) and then lets an explicit intermediate_size
  // from config.json override it (falcon-mamba-7b: expand 16, intermediate_size 8192).
  JAMBA_ASSIGN_OR_RETURN(double expand, f.Positive("expand", 2.0));
  if (!f.IsUnset("intermediate_size")) {
    JAMBA_ASSIGN_OR_RETURN(c.mamba_d_inner, f.Dim("intermediate_size", 0));
  } else {
    double d_inner = std::floor(expand * static_cast<double>(c.hidden_size));
    if (!(d_inner >= 1) || d_inner > static_cast<double>(kMaxDimension)) {
      return f.Error(
          "expand", absl::StrCat("expand * hidden_size = ", d_inner, " is not a valid inner size"));
    }
    c.mamba_d_inner = static_cast<int64_t>(d_inner);
  }
  c.intermediate_size = c.mamba_d_inner;
  JAMBA_ASSIGN_OR_RETURN(c.mamba_dt_rank, DtRank(f, "time_step_rank", c.hidden_size));
  JAMBA_RETURN_IF_ERROR(CheckMambaDerived(f, "intermediate_size", "state_size", c));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_proj_bias, f.Bool("use_bias", false));
  JAMBA_ASSIGN_OR_RETURN(c.mamba_conv_bias, f.Bool("use_conv_bias", true));
  if (falcon) {
    c.mamba_inner_norm = MambaInnerNorm::kWeightless;
    JAMBA_ASSIGN_OR_RETURN(c.mixer_rms_eps, Eps(f, "mixer_rms_eps", 1e-6));
  } else {
    c.mamba_inner_norm = MambaInnerNorm::kNone;
    c.mixer_rms_eps = c.rms_norm_eps;  // unused
  }

  c.layers.assign(c.num_layers, LayerSpec{MixerKind::kMamba, FfnKind::kNone});
  return ParseTokens(f, /*bos=*/0, /*pad=*/0, /*eos=*/0, c);
}

// Only plain RoPE is implemented; scaled variants (linear, yarn, llama3, ...) must not load
// silently with wrong positions.
absl::Status CheckRopeType(const Fields& f, const std::string& key, const Json& params) {
  for (const char* type_key : {"rope_type", "type"}) {
    auto it = params.find(type_key);
    if (it == params.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return f.Error(key,
                     absl::StrCat("'", type_key, "' must be a string, got ", Fields::TypeOf(*it)));
    }
    const std::string& type = it->get_ref<const std::string&>();
    if (type != "default") {
      return f.Error(
          key, absl::StrCat("unsupported rope_type ", QuoteForError(type), " (only \"default\")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMixtral(const Fields& f, ModelConfig& c) {
  JAMBA_ASSIGN_OR_RETURN(c.vocab_size, f.Dim("vocab_size", 32000));
  JAMBA_ASSIGN_OR_RETURN(c.hidden_size, f.Dim("hidden_size", 4096));
  JAMBA_ASSIGN_OR_RETURN(c.intermediate_size, f.Dim("intermediate_size", 14336));
  JAMBA_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", 32, 1, kMaxLayers));
  JAMBA_ASSIGN_OR_RETURN(c.rms_norm_eps, Eps(f, "rms_norm_eps", 1e-5));
  JAMBA_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  JAMBA_ASSIGN_OR_RETURN(c.max_position_embeddings,
                         f.Int("max_position_embeddings", 131072, 0, kMaxDimension));
  JAMBA_RETURN_IF_ERROR(CheckActivation(f));
  JAMBA_RETURN_IF_ERROR(
      CheckDerived(f, "intermediate_size", "2 * intermediate_size", 2 * c.intermediate_size));

  JAMBA_RETURN_IF_ERROR(ParseHeads(f, 8, c));
  if (f.IsUnset("head_dim")) {
    JAMBA_RETURN_IF_ERROR(DeriveHeadDim(f, c));
  } else {
    JAMBA_ASSIGN_OR_RETURN(c.head_dim, f.Dim("head_dim", 0));
  }
  JAMBA_RETURN_IF_ERROR(
      CheckDerived(f, "head_dim", "num_attention_heads * head_dim", c.num_heads * c.head_dim));
  if (c.head_dim % 2 != 0) {
    return f.Error("head_dim", absl::StrCat("RoPE needs an even head_dim, got ", c.head_dim));
  }
  c.use_rope = true;

  // rope_theta: top level (older configs) or inside rope_parameters (transformers v5).
  JAMBA_ASSIGN_OR_RETURN(c.rope_theta, f.Positive("rope_theta", 1e6));
  if (!f.IsUnset("rope_parameters")) {
    const Json& params = *f.Find("rope_parameters");
    if (!params.is_object()) {
      return f.Error("rope_parameters",
                     absl::StrCat("must be an object, got ", Fields::TypeOf(params)));
    }
    JAMBA_RETURN_IF_ERROR(CheckRopeType(f, "rope_parameters", params));
    auto theta = params.find("rope_theta");
    if (theta != params.end()) {
      JAMBA_ASSIGN_OR_RETURN(c.rope_theta, f.PositiveValue("rope_parameters.rope_theta", *theta));
    }
  }
  if (!f.IsUnset("rope_scaling")) {
    const Json& scaling = *f.Find("rope_scaling");
    if (!scaling.is_object()) {
      return f.Error("rope_scaling",
                     absl::StrCat("must be an object or null, got ", Fields::TypeOf(scaling)));
    }
    JAMBA_RETURN_IF_ERROR(CheckRopeType(f, "rope_scaling", scaling));
  }

  JAMBA_RETURN_IF_ERROR(ParseExperts(f, "num_local_experts", "num_experts", 8,
                                     /*routed_even_if_one=*/true, c));
  c.moe_renormalize = true;
  c.layers.assign(c.num_layers, LayerSpec{MixerKind::kAttention, FfnKind::kMoe});
  return ParseTokens(f, /*bos=*/1, /*pad=*/-1, /*eos=*/2, c);
}

}  // namespace

const char* ArchitectureName(Architecture a) {
  switch (a) {
    case Architecture::kJamba:
      return "jamba";
    case Architecture::kMamba:
      return "mamba";
    case Architecture::kFalconMamba:
      return "falcon_mamba";
    case Architecture::kMixtral:
      return "mixtral";
  }
  return "?";
}

int64_t ModelConfig::NumLayersOf(MixerKind k) const {
  int64_t n = 0;
  for (const LayerSpec& l : layers) n += l.mixer == k ? 1 : 0;
  return n;
}

int64_t ModelConfig::NumMoeLayers() const {
  int64_t n = 0;
  for (const LayerSpec& l : layers) n += l.ffn == FfnKind::kMoe ? 1 : 0;
  return n;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  absl::StatusOr<Json> parsed = ParseStrictJson(json_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parsed.status().message()));
  }
  const Json& root = *parsed;
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": config must be a JSON object, got ", Fields::TypeOf(root)));
  }
  Fields f(root, source);
  const Json* type = f.Find("model_type");
  if (type == nullptr) return f.Error("model_type", "missing");
  if (!type->is_string()) {
    return f.Error("model_type", absl::StrCat("must be a string, got ", Fields::TypeOf(*type)));
  }
  const std::string& name = type->get_ref<const std::string&>();
  ModelConfig c;
  if (name == "jamba") {
    c.arch = Architecture::kJamba;
    JAMBA_RETURN_IF_ERROR(ParseJamba(f, c));
  } else if (name == "mamba") {
    c.arch = Architecture::kMamba;
    JAMBA_RETURN_IF_ERROR(ParseMamba(f, /*falcon=*/false, c));
  } else if (name == "falcon_mamba") {
    c.arch = Architecture::kFalconMamba;
    JAMBA_RETURN_IF_ERROR(ParseMamba(f, /*falcon=*/true, c));
  } else if (name == "mixtral") {
    c.arch = Architecture::kMixtral;
    JAMBA_RETURN_IF_ERROR(ParseMixtral(f, c));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported model_type ",
                                                   QuoteForError(name),
                                                   " (expected jamba, mamba, falcon_mamba or "
                                                   "mixtral)"));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/config.json");
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  std::string text(reinterpret_cast<const char*>(file->data()), file->size());
  JAMBA_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, path));
  const std::string gen_path = absl::StrCat(dir, "/generation_config.json");
  struct stat st;
  if (::stat(gen_path.c_str(), &st) == 0) {
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> gen, MappedFile::Open(gen_path));
    std::string gen_text(reinterpret_cast<const char*>(gen->data()), gen->size());
    JAMBA_RETURN_IF_ERROR(MergeGenerationConfig(gen_text, gen_path, &config));
  }
  return config;
}

}  // namespace jamba
