#include "engine/config/model_config.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

const std::string kFixtures = std::string(JAMBA_TEST_DATA_DIR) + "/config";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json ReadJson(const std::string& path) {
  std::string text = ReadFile(path);
  EXPECT_FALSE(text.empty()) << path;
  return Json::parse(text);
}

std::vector<int64_t> Indices(const ModelConfig& c, MixerKind mixer) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    if (c.layers[i].mixer == mixer) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

std::vector<int64_t> MoeIndices(const ModelConfig& c) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    if (c.layers[i].ffn == FfnKind::kMoe) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

// ---- Against transformers (tools/gen_config_fixtures.py) ----------------------------------

class FixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTest, MatchesTransformers) {
  const std::string dir = kFixtures + "/" + GetParam();
  Json e = ReadJson(dir + "/expected.json");
  absl::StatusOr<ModelConfig> parsed = LoadModelConfig(dir);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = *parsed;

  EXPECT_EQ(ArchitectureName(c.arch), e["model_type"].get<std::string>());
  EXPECT_EQ(c.vocab_size, e["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.hidden_size, e["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.num_layers, e["num_layers"].get<int64_t>());
  EXPECT_EQ(c.tie_word_embeddings, e["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(c.bos_token_id, e["bos_token_id"].get<int64_t>());
  EXPECT_EQ(c.pad_token_id, e["pad_token_id"].get<int64_t>());
  EXPECT_EQ(c.eos_token_ids, e["eos_token_ids"].get<std::vector<int64_t>>());
  EXPECT_FLOAT_EQ(c.rms_norm_eps, e["rms_norm_eps"].get<float>());

  for (const char* key : {"intermediate_size", "num_heads", "num_kv_heads", "head_dim",
                          "max_position_embeddings", "num_experts", "num_experts_per_tok"}) {
    if (!e.contains(key)) continue;
    int64_t got = 0;
    std::string k = key;
    if (k == "intermediate_size") got = c.intermediate_size;
    if (k == "num_heads") got = c.num_heads;
    if (k == "num_kv_heads") got = c.num_kv_heads;
    if (k == "head_dim") got = c.head_dim;
    if (k == "max_position_embeddings") got = c.max_position_embeddings;
    if (k == "num_experts") got = c.num_experts;
    if (k == "num_experts_per_tok") got = c.num_experts_per_tok;
    EXPECT_EQ(got, e[key].get<int64_t>()) << key;
  }
  if (e.contains("mamba_d_inner")) {
    EXPECT_EQ(c.mamba_d_inner, e["mamba_d_inner"].get<int64_t>());
    EXPECT_EQ(c.mamba_d_state, e["mamba_d_state"].get<int64_t>());
    EXPECT_EQ(c.mamba_d_conv, e["mamba_d_conv"].get<int64_t>());
    EXPECT_EQ(c.mamba_dt_rank, e["mamba_dt_rank"].get<int64_t>());
    EXPECT_EQ(c.mamba_conv_bias, e["mamba_conv_bias"].get<bool>());
    EXPECT_EQ(c.mamba_proj_bias, e["mamba_proj_bias"].get<bool>());
  }
  if (e.contains("mixer_rms_eps")) {
    EXPECT_FLOAT_EQ(c.mixer_rms_eps, e["mixer_rms_eps"].get<float>());
  }
  if (e.contains("rope_theta")) {
    EXPECT_DOUBLE_EQ(c.rope_theta, e["rope_theta"].get<double>());
  }

  const Json& layers = e["layers"];
  ASSERT_EQ(c.layers.size(), layers.size());
  ASSERT_EQ(static_cast<int64_t>(c.layers.size()), c.num_layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string mixer = layers[i]["mixer"].get<std::string>();
    std::string ffn = layers[i]["ffn"].get<std::string>();
    EXPECT_EQ(c.layers[i].mixer, mixer == "attention" ? MixerKind::kAttention : MixerKind::kMamba)
        << "layer " << i;
    FfnKind want = ffn == "moe" ? FfnKind::kMoe : ffn == "dense" ? FfnKind::kDense : FfnKind::kNone;
    EXPECT_EQ(c.layers[i].ffn, want) << "layer " << i;
  }

  // Per-family constants of spec sections 1, 2.5 and 3.
  switch (c.arch) {
    case Architecture::kJamba:
      EXPECT_EQ(c.mamba_inner_norm, MambaInnerNorm::kWeighted);
      EXPECT_FALSE(c.use_rope);
      EXPECT_FALSE(c.moe_renormalize);
      break;
    case Architecture::kMamba:
      EXPECT_EQ(c.mamba_inner_norm, MambaInnerNorm::kNone);
      break;
    case Architecture::kFalconMamba:
      EXPECT_EQ(c.mamba_inner_norm, MambaInnerNorm::kWeightless);
      break;
    case Architecture::kMixtral:
      EXPECT_TRUE(c.use_rope);
      EXPECT_TRUE(c.moe_renormalize);
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, FixtureTest,
                         ::testing::Values("jamba_v0_1", "jamba_1_5_mini", "jamba_1_5_large", "jamba_tiny",
                                           "jamba_dense", "mamba_130m", "mamba_auto",
                                           "falcon_mamba_7b", "falcon_mamba_tiny", "mixtral_8x7b",
                                           "mixtral_v5"));

// ---- Hand-computed values from shared/spec/model_math.md ----------------------------------

TEST(ModelConfigTest, JambaV01Schedule) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/jamba_v0_1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Indices(*c, MixerKind::kAttention), (std::vector<int64_t>{4, 12, 20, 28}));
  EXPECT_EQ(c->NumLayersOf(MixerKind::kMamba), 28);
  std::vector<int64_t> odd;
  for (int64_t i = 1; i < 32; i += 2) odd.push_back(i);
  EXPECT_EQ(MoeIndices(*c), odd);
  EXPECT_EQ(c->NumMoeLayers(), 16);
  for (int64_t i : {4, 12, 20, 28}) EXPECT_EQ(c->layers[i].ffn, FfnKind::kDense);  // pitfall 11
  EXPECT_EQ(c->mamba_d_inner, 8192);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->mamba_dt_rank, 256);
  EXPECT_FLOAT_EQ(c->mixer_rms_eps, 1e-6f);
}

TEST(ModelConfigTest, Jamba15MiniEosList) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/jamba_1_5_mini");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2, 518}));
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->pad_token_id, 0);
}

TEST(ModelConfigTest, FalconMamba7bIntermediateSizeWinsOverExpand) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/falcon_mamba_7b");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mamba_d_inner, 8192);  // not 16 * 4096
  EXPECT_EQ(c->mamba_dt_rank, 256);
  EXPECT_FLOAT_EQ(c->mixer_rms_eps, 1e-6f);  // no mixer_rms_eps key
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{11}));
  EXPECT_EQ(c->NumMoeLayers(), 0);
  EXPECT_EQ(c->NumLayersOf(MixerKind::kMamba), 64);
}

TEST(ModelConfigTest, MambaAutoDtRankAndDefaultTie) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/mamba_auto");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mamba_dt_rank, 48);       // ceil(768 / 16)
  EXPECT_EQ(c->mamba_d_inner, 3 * 768);  // int(expand * H) without intermediate_size
  EXPECT_TRUE(c->tie_word_embeddings);   // Mamba default
}

TEST(ModelConfigTest, MixtralDefaults) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/mixtral_8x7b");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->pad_token_id, -1);
  EXPECT_EQ(c->NumMoeLayers(), 32);
  EXPECT_EQ(c->NumLayersOf(MixerKind::kAttention), 32);
}

// ---- Variants built from a small base config ----------------------------------------------

Json TinyJamba() { return ReadJson(kFixtures + "/jamba_tiny/config.json"); }

absl::StatusOr<ModelConfig> ParseJson(const Json& j) {
  return ParseModelConfig(j.dump(), "x.json");
}

TEST(ModelConfigTest, JambaDtRankAutoRoundsUp) {
  Json j = TinyJamba();
  j["hidden_size"] = 130;
  j["num_attention_heads"] = 2;
  j["num_key_value_heads"] = 2;
  absl::StatusOr<ModelConfig> c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mamba_dt_rank, 9);  // ceil(130 / 16)
}

TEST(ModelConfigTest, NullKvHeadsMeansAllHeads) {
  Json j = TinyJamba();
  j["num_key_value_heads"] = nullptr;
  absl::StatusOr<ModelConfig> c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 2);
}

TEST(ModelConfigTest, NumExpertsAliasAndDefault) {
  Json j = TinyJamba();  // uses num_local_experts: 4
  EXPECT_EQ(ParseJson(j)->num_experts, 4);
  j.erase("num_local_experts");
  EXPECT_EQ(ParseJson(j)->num_experts, 16);  // JambaConfig default
}

TEST(ModelConfigTest, LayerTypesOverrideAttentionSchedule) {
  Json j = TinyJamba();
  j["layer_types"] = {"mamba",     "attention", "mamba", "mamba",
                      "attention", "mamba",     "mamba", "mamba"};
  absl::StatusOr<ModelConfig> c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Indices(*c, MixerKind::kAttention), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(MoeIndices(*c), (std::vector<int64_t>{1, 3, 5, 7}));  // MoE schedule unchanged

  j["layer_types"] = {
      "linear_attention", "full_attention", "mamba", "mamba", "mamba", "mamba", "mamba", "mamba"};
  c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Indices(*c, MixerKind::kAttention), (std::vector<int64_t>{1}));
}

TEST(ModelConfigTest, EosForms) {
  Json j = TinyJamba();
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(ParseJson(j)->eos_token_ids.empty());
  j["eos_token_id"] = Json::array();
  EXPECT_TRUE(ParseJson(j)->eos_token_ids.empty());
  j["eos_token_id"] = 7;
  EXPECT_EQ(ParseJson(j)->eos_token_ids, (std::vector<int64_t>{7}));
  j["bos_token_id"] = nullptr;
  EXPECT_EQ(ParseJson(j)->bos_token_id, -1);
}

TEST(ModelConfigTest, MixtralRopeForms) {
  Json j = ReadJson(kFixtures + "/mixtral_v5/config.json");
  EXPECT_DOUBLE_EQ(ParseJson(j)->rope_theta, 1e4);
  j.erase("rope_parameters");
  EXPECT_DOUBLE_EQ(ParseJson(j)->rope_theta, 1e6);  // default
  j["rope_theta"] = 5e5;
  EXPECT_DOUBLE_EQ(ParseJson(j)->rope_theta, 5e5);
  j["rope_parameters"] = {{"rope_theta", 2e5}};  // no rope_type: default
  EXPECT_DOUBLE_EQ(ParseJson(j)->rope_theta, 2e5);
  j["rope_scaling"] = nullptr;
  EXPECT_TRUE(ParseJson(j).ok());
  j["head_dim"] = nullptr;
  EXPECT_EQ(ParseJson(j)->head_dim, 40);  // 160 / 4
}

TEST(ModelConfigTest, IgnoresSlidingWindowAndUnknownKeys) {
  Json j = ReadJson(kFixtures + "/mixtral_v5/config.json");
  j["sliding_window"] = 4096;
  j["some_future_key"] = {{"nested", {1, 2, 3}}};
  EXPECT_TRUE(ParseJson(j).ok());
}

// ---- Errors ---------------------------------------------------------------------------------

struct ErrorCase {
  std::string name;
  std::string base;  // fixture folder
  Json patch;        // merged into the base config (null values are written as null)
  std::vector<std::string> remove;
  std::string want;  // substring of the message
};

class ErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorTest, Rejected) {
  const ErrorCase& p = GetParam();
  Json j = ReadJson(kFixtures + "/" + p.base + "/config.json");
  for (auto it = p.patch.begin(); it != p.patch.end(); ++it) j[it.key()] = it.value();
  for (const std::string& key : p.remove) j.erase(key);
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "dir/config.json");
  ASSERT_FALSE(c.ok()) << p.name;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("dir/config.json: "));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(p.want));
}

const Json kNull = Json(nullptr);

INSTANTIATE_TEST_SUITE_P(
    Validation, ErrorTest,
    ::testing::Values(
        ErrorCase{"unknown_type",
                  "jamba_tiny",
                  {{"model_type", "llama"}},
                  {},
                  "unsupported model_type 'llama'"},
        ErrorCase{"missing_type", "jamba_tiny", {}, {"model_type"}, "field 'model_type': missing"},
        ErrorCase{"type_not_string",
                  "jamba_tiny",
                  {{"model_type", 3}},
                  {},
                  "field 'model_type': must be a string"},
        ErrorCase{"zero_hidden",
                  "jamba_tiny",
                  {{"hidden_size", 0}},
                  {},
                  "field 'hidden_size': must be positive, got 0"},
        ErrorCase{"negative_vocab",
                  "jamba_tiny",
                  {{"vocab_size", -5}},
                  {},
                  "field 'vocab_size': must be positive, got -5"},
        ErrorCase{"hidden_string",
                  "jamba_tiny",
                  {{"hidden_size", "128"}},
                  {},
                  "field 'hidden_size': must be an integer, got string"},
        ErrorCase{"hidden_float",
                  "jamba_tiny",
                  {{"hidden_size", 128.5}},
                  {},
                  "field 'hidden_size': must be an integer, got a non-integer number"},
        ErrorCase{"hidden_null",
                  "jamba_tiny",
                  {{"hidden_size", kNull}},
                  {},
                  "field 'hidden_size': must be an integer, got null"},
        ErrorCase{"huge_hidden",
                  "jamba_tiny",
                  {{"hidden_size", int64_t{1} << 31}},
                  {},
                  "field 'hidden_size': must be at most 2147483647"},
        ErrorCase{"u64_hidden",
                  "jamba_tiny",
                  {{"hidden_size", UINT64_MAX}},
                  {},
                  "field 'hidden_size': must be at most"},
        ErrorCase{"too_many_layers",
                  "jamba_tiny",
                  {{"num_hidden_layers", 10001}},
                  {},
                  "field 'num_hidden_layers': must be at most 10000"},
        ErrorCase{"zero_layers",
                  "mamba_130m",
                  {{"num_hidden_layers", 0}},
                  {},
                  "field 'num_hidden_layers': must be positive"},
        ErrorCase{"gqa",
                  "jamba_tiny",
                  {{"num_attention_heads", 4}, {"num_key_value_heads", 3}},
                  {},
                  "num_attention_heads (4) is not divisible by num_key_value_heads (3)"},
        ErrorCase{"head_dim",
                  "jamba_tiny",
                  {{"num_attention_heads", 3}, {"num_key_value_heads", 1}},
                  {},
                  "hidden_size (128) is not divisible by num_attention_heads (3)"},
        ErrorCase{"attn_offset",
                  "jamba_tiny",
                  {{"attn_layer_offset", 4}},
                  {},
                  "field 'attn_layer_offset': must be smaller than attn_layer_period (4), got 4"},
        ErrorCase{"expert_offset",
                  "jamba_tiny",
                  {{"expert_layer_offset", 2}},
                  {},
                  "field 'expert_layer_offset': must be smaller than expert_layer_period"},
        ErrorCase{"zero_period",
                  "jamba_tiny",
                  {{"attn_layer_period", 0}},
                  {},
                  "field 'attn_layer_period': must be positive, got 0"},
        ErrorCase{"negative_offset",
                  "jamba_tiny",
                  {{"expert_layer_offset", -1}},
                  {},
                  "field 'expert_layer_offset': must be at least 0, got -1"},
        ErrorCase{"k_gt_e",
                  "jamba_tiny",
                  {{"num_experts_per_tok", 5}},
                  {},
                  "field 'num_experts_per_tok': must be at most num_local_experts (4), got 5"},
        ErrorCase{"k_zero",
                  "jamba_tiny",
                  {{"num_experts_per_tok", 0}},
                  {},
                  "field 'num_experts_per_tok': must be positive, got 0"},
        ErrorCase{"zero_experts",
                  "jamba_v0_1",
                  {{"num_experts", 0}},
                  {},
                  "field 'num_experts': must be positive"},
        ErrorCase{"mixtral_k_gt_e",
                  "mixtral_8x7b",
                  {{"num_experts_per_tok", 9}},
                  {},
                  "field 'num_experts_per_tok': must be at most num_local_experts (8), got 9"},
        ErrorCase{"dt_rank_zero",
                  "jamba_tiny",
                  {{"mamba_dt_rank", 0}},
                  {},
                  "field 'mamba_dt_rank': must be positive, got 0"},
        ErrorCase{"dt_rank_string",
                  "mamba_130m",
                  {{"time_step_rank", "big"}},
                  {},
                  "field 'time_step_rank': must be an integer or \"auto\", got 'big'"},
        ErrorCase{"bool_type",
                  "jamba_tiny",
                  {{"mamba_conv_bias", 1}},
                  {},
                  "field 'mamba_conv_bias': must be a boolean, got an integer"},
        ErrorCase{"eps_zero",
                  "jamba_tiny",
                  {{"rms_norm_eps", 0}},
                  {},
                  "field 'rms_norm_eps': must be a positive finite number"},
        ErrorCase{"eps_underflow",
                  "mamba_130m",
                  {{"layer_norm_epsilon", 1e-300}},
                  {},
                  "field 'layer_norm_epsilon': is not representable as a positive float"},
        ErrorCase{"eps_string",
                  "falcon_mamba_7b",
                  {{"mixer_rms_eps", "1e-6"}},
                  {},
                  "field 'mixer_rms_eps': must be a number, got string"},
        ErrorCase{"expand_product",
                  "jamba_tiny",
                  {{"hidden_size", 1 << 30}, {"mamba_expand", 4}},
                  {},
                  "field 'mamba_expand': mamba_expand * hidden_size = 4294967296 exceeds"},
        ErrorCase{"mamba_expand_product",
                  "mamba_auto",
                  {{"expand", 1e12}},
                  {},
                  "field 'expand': expand * hidden_size"},
        ErrorCase{"mamba_expand_negative",
                  "mamba_auto",
                  {{"expand", -2}},
                  {},
                  "field 'expand': must be a positive finite number"},
        ErrorCase{"layer_types_length",
                  "jamba_tiny",
                  {{"layer_types", {"mamba", "attention"}}},
                  {},
                  "field 'layer_types': has 2 entries, but num_hidden_layers is 8"},
        ErrorCase{"layer_types_value",
                  "jamba_tiny",
                  {{"layer_types",
                    {"mamba", "mamba", "mamba", "mamba", "mamba", "mamba", "moe", "mamba"}}},
                  {},
                  "field 'layer_types': entry 6 must be \"attention\" or \"mamba\", got 'moe'"},
        ErrorCase{"layer_types_type",
                  "jamba_tiny",
                  {{"layer_types", "mamba"}},
                  {},
                  "field 'layer_types': must be a list, got string"},
        ErrorCase{
            "eos_outside_vocab",
            "jamba_tiny",
            {{"eos_token_id", {2, 5000}}},
            {},
            "field 'eos_token_id': token id 5000 is outside the vocabulary (vocab_size 1024)"},
        ErrorCase{"eos_negative",
                  "jamba_tiny",
                  {{"eos_token_id", -1}},
                  {},
                  "field 'eos_token_id': must be at least 0, got -1"},
        ErrorCase{"eos_bad_entry",
                  "jamba_tiny",
                  {{"eos_token_id", {2, "x"}}},
                  {},
                  "field 'eos_token_id': must be an integer, got string"},
        ErrorCase{"bos_type",
                  "mamba_130m",
                  {{"bos_token_id", {0}}},
                  {},
                  "field 'bos_token_id': must be an integer, got array"},
        ErrorCase{"default_bos_outside_vocab",
                  "jamba_tiny",
                  {{"vocab_size", 1}},
                  {"bos_token_id"},
                  "field 'bos_token_id': token id 1 is outside the vocabulary (vocab_size 1)"},
        ErrorCase{"rope_type",
                  "mixtral_v5",
                  {{"rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 1e4}}}},
                  {},
                  "field 'rope_parameters': unsupported rope_type 'yarn'"},
        ErrorCase{"rope_scaling",
                  "mixtral_8x7b",
                  {{"rope_scaling", {{"type", "linear"}}}},
                  {},
                  "field 'rope_scaling': unsupported rope_type 'linear'"},
        ErrorCase{"rope_parameters_type",
                  "mixtral_v5",
                  {{"rope_parameters", 3}},
                  {},
                  "field 'rope_parameters': must be an object"},
        ErrorCase{"rope_theta_negative",
                  "mixtral_8x7b",
                  {{"rope_theta", -1}},
                  {},
                  "field 'rope_theta': must be a positive finite number"},
        ErrorCase{"head_dim_zero",
                  "mixtral_v5",
                  {{"head_dim", 0}},
                  {},
                  "field 'head_dim': must be positive, got 0"},
        ErrorCase{"head_dim_odd",
                  "mixtral_v5",
                  {{"head_dim", 33}},
                  {},
                  "field 'head_dim': RoPE needs an even head_dim"},
        ErrorCase{"activation",
                  "mixtral_v5",
                  {{"hidden_act", "gelu"}},
                  {},
                  "field 'hidden_act': unsupported activation 'gelu'"},
        ErrorCase{"tie_type",
                  "mamba_130m",
                  {{"tie_word_embeddings", "yes"}},
                  {},
                  "field 'tie_word_embeddings': must be a boolean, got string"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(ModelConfigTest, MalformedJsonReportsPosition) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig("{\"model_type\": \"jamba\",\n  \"x\": }", "a/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("a/config.json: malformed JSON at byte 32"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("line 2"));
}

TEST(ModelConfigTest, RejectsNonObjectsAndOddInputs) {
  for (const char* text :
       {"", "[]", "null", "42", "\"jamba\"", "{", "{}}", "{\"a\":1e999}", "\xff\xfe{}"}) {
    absl::StatusOr<ModelConfig> c = ParseModelConfig(text, "c.json");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("c.json: ")) << text;
  }
  EXPECT_THAT(std::string(ParseModelConfig("[1]", "c.json").status().message()),
              HasSubstr("config must be a JSON object, got array"));
}

TEST(ModelConfigTest, RejectsDuplicateKeysAndDeepNesting) {
  // Python's json.load would silently keep the last value; we refuse to guess.
  absl::StatusOr<ModelConfig> c = ParseModelConfig(
      R"({"model_type": "mamba", "hidden_size": 64, "hidden_size": 32})", "d/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()), "d/config.json: duplicate key 'hidden_size'");

  std::string deep = "{\"model_type\": \"mamba\", \"x\": " + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  c = ParseModelConfig(deep, "d/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(std::string(c.status().message()), "d/config.json: JSON nested deeper than 64 levels");
}

TEST(ModelConfigTest, LongStringsAreShortenedInMessages) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig("{\"model_type\": \"" + std::string(5000, 'q') + "\"}", "c.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("(5000 bytes)"));
  EXPECT_LT(c.status().message().size(), 400u);
}

TEST(ModelConfigTest, LoadMissingFileNamesPath) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig("/nonexistent/model");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/model/config.json"));
}

TEST(ModelConfigTest, ArchitectureNames) {
  EXPECT_STREQ(ArchitectureName(Architecture::kJamba), "jamba");
  EXPECT_STREQ(ArchitectureName(Architecture::kMamba), "mamba");
  EXPECT_STREQ(ArchitectureName(Architecture::kFalconMamba), "falcon_mamba");
  EXPECT_STREQ(ArchitectureName(Architecture::kMixtral), "mixtral");
}

}  // namespace
}  // namespace jamba
