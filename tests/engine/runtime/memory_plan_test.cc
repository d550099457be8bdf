// PlanMemory against hand-computed parameter counts: each expected value below is the sum of
// the weight shapes that shared/spec/model_math.md lists for the architecture, evaluated for
// the Hub config (see the per-test formulas), and each agrees with the figure its model card
// publishes. The plans of the 398B and 46.7B models also show that planning reads and
// allocates nothing: their weights would not fit this machine's memory.
#include "engine/runtime/memory_plan.h"

#include <string>

#include "engine/config/model_config.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

const std::string kFixtures = std::string(JAMBA_TEST_DATA_DIR) + "/config";

MemoryPlan Plan(const std::string& fixture, DType dtype = DType::kBF16) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/" + fixture);
  EXPECT_TRUE(c.ok()) << c.status();
  absl::StatusOr<MemoryPlan> plan = PlanMemory(*c, dtype);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : MemoryPlan{};
}

// The per-layer footprints add up to the totals.
void ExpectConsistent(const MemoryPlan& p) {
  const int64_t n = static_cast<int64_t>(p.layers.size());
  EXPECT_EQ(p.globals_bytes + p.LayerBytes(0, n, /*with_experts=*/true), p.weight_bytes);
  int64_t experts = 0, params = p.globals_parameters;
  for (const LayerFootprint& f : p.layers) {
    experts += f.expert_bytes;
    params += f.parameters;
  }
  EXPECT_EQ(experts, p.expert_bytes);
  EXPECT_EQ(params, p.parameters);
  EXPECT_EQ(p.LayerBytes(0, n, true) - p.LayerBytes(0, n, false), p.expert_bytes);
  EXPECT_EQ(p.KvBytesPerToken(0, n), p.kv_bytes_per_token);
  EXPECT_EQ(p.MambaBytesPerSequence(0, n), p.mamba_bytes_per_sequence);
}

// Jamba-v0.1 (H 4096, I 14336, 32 layers, 4 attention at 4 mod 8, 16 MoE at odd layers,
// E 16, k 2, V 65536, Di 8192, N 16, K 4, R 256, untied head):
//   globals   2 V H + H
//   each layer 2 H (norms)
//   attention 2 H H + 2 H (8 * 128)
//   Mamba     2 Di H + Di K + Di + (R + 2N) Di + Di R + Di + Di N + Di + H Di + R + 2N
//   dense MLP 3 I H;  MoE  E H + E (3 I H), of which k (3 I H) active.
// = 51,570,323,328 parameters ("51.6B" on the model card), 12,110,311,296 active ("12B").
TEST(MemoryPlanTest, JambaV01) {
  const MemoryPlan p = Plan("jamba_v0_1");
  ASSERT_EQ(p.layers.size(), 32u);
  EXPECT_EQ(p.parameters, 51570323328);
  EXPECT_EQ(p.active_parameters, 12110311296);
  EXPECT_EQ(p.expert_parameters, 45097156608);  // 16 layers x 16 experts x 3 I H
  // bf16 matrices; norms, conv, dt bias, A, D and the dt/B/C norm weights stay f32:
  // 4096 + 32 x 2 x 4096 + 28 x (8192 x 4 + 3 x 8192 + 8192 x 16 + 256 + 32) = 5,549,952
  // f32 parameters, so bytes = 2 x 51,570,323,328 + 2 x 5,549,952.
  EXPECT_EQ(p.weight_bytes, 103151746560);
  EXPECT_EQ(p.expert_bytes, 2 * 45097156608);
  // K + V, f32: 4 layers x 2 x 8 heads x 128 x 4 bytes.
  EXPECT_EQ(p.kv_bytes_per_token, 32768);
  // conv window (K - 1) + SSM state N, f32: 28 layers x 8192 x (3 + 16) x 4 bytes.
  EXPECT_EQ(p.mamba_bytes_per_sequence, 17432576);
  EXPECT_EQ(p.layers[4].spec.mixer, MixerKind::kAttention);
  EXPECT_EQ(p.layers[4].kv_bytes_per_token, 8192);
  EXPECT_EQ(p.layers[4].mamba_bytes_per_sequence, 0);
  EXPECT_EQ(p.layers[1].expert_parameters, 16 * 3 * 14336 * 4096LL);
  EXPECT_EQ(p.layers[0].expert_parameters, 0);
  EXPECT_EQ(p.embedding_bytes, 2 * 65536 * 4096);
  EXPECT_EQ(p.head_bytes, 2 * 65536 * 4096 + 4 * 4096);
  EXPECT_EQ(p.globals_bytes, p.embedding_bytes + p.head_bytes);
  ExpectConsistent(p);
}

// Jamba-1.5-Large: the same formulas at H 8192, I 24576, 72 layers (9 attention), 64 heads,
// R 512, Di 16384: 398,555,145,696 parameters ("398B"), 94,149,338,592 active ("94B").
TEST(MemoryPlanTest, Jamba15Large) {
  const MemoryPlan p = Plan("jamba_1_5_large");
  ASSERT_EQ(p.layers.size(), 72u);
  EXPECT_EQ(p.parameters, 398555145696);
  EXPECT_EQ(p.active_parameters, 94149338592);
  EXPECT_EQ(p.expert_parameters, 347892350976);  // 36 x 16 x 3 x 24576 x 8192
  EXPECT_EQ(p.kv_bytes_per_token, 9 * 2 * 8 * 128 * 4);
  EXPECT_EQ(p.mamba_bytes_per_sequence, 63LL * 16384 * 19 * 4);
  ExpectConsistent(p);
}

// Int8 experts: one byte per expert weight plus an f32 scale per row; 256 experts of
// 2 x 14336 (gate, up) + 4096 (down) rows each. Everything else as in bf16.
TEST(MemoryPlanTest, JambaV01Int8Experts) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/jamba_v0_1");
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<MemoryPlan> p = PlanMemory(*c, DType::kBF16, /*int8_experts=*/true);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->parameters, 51570323328);
  EXPECT_EQ(p->expert_bytes, 45097156608 + 256LL * (2 * 14336 + 4096) * 4);
  EXPECT_EQ(p->weight_bytes, 103151746560 - 2 * 45097156608 + p->expert_bytes);
  ExpectConsistent(*p);
}

// f32 weights: every parameter takes 4 bytes.
TEST(MemoryPlanTest, F32WeightsAreFourBytesEach) {
  const MemoryPlan p = Plan("jamba_v0_1", DType::kF32);
  EXPECT_EQ(p.weight_bytes, 4 * p.parameters);
  EXPECT_EQ(p.expert_bytes, 4 * p.expert_parameters);
  ExpectConsistent(p);
}

// Mixtral-8x7B (H 4096, I 14336, 32 layers, 32/8 heads, E 8, k 2, V 32000): per layer
// 2 H + 2 H H + 2 H 1024 + E H + E 3 I H; 46,702,792,704 parameters ("46.7B"),
// 12,879,925,248 active ("12.9B").
TEST(MemoryPlanTest, Mixtral8x7b) {
  const MemoryPlan p = Plan("mixtral_8x7b");
  EXPECT_EQ(p.parameters, 46702792704);
  EXPECT_EQ(p.active_parameters, 12879925248);
  EXPECT_EQ(p.kv_bytes_per_token, 32 * 2 * 8 * 128 * 4);
  EXPECT_EQ(p.mamba_bytes_per_sequence, 0);
  ExpectConsistent(p);
}

// FalconMamba-7B (H 4096, Di 8192, 64 layers, R 256, V 65024, untied, weightless dt/B/C
// norms): per layer H + 2 Di H + Di K + Di + (R + 2N) Di + Di R + Di + Di N + Di + H Di;
// 7,272,665,088 parameters ("7.27B"), no experts, no KV.
TEST(MemoryPlanTest, FalconMamba7b) {
  const MemoryPlan p = Plan("falcon_mamba_7b");
  EXPECT_EQ(p.parameters, 7272665088);
  EXPECT_EQ(p.active_parameters, p.parameters);
  EXPECT_EQ(p.kv_bytes_per_token, 0);
  EXPECT_EQ(p.mamba_bytes_per_sequence, 64LL * 8192 * 19 * 4);
  ExpectConsistent(p);
}

// mamba-130m-hf (H 768, 24 layers, R 48, V 50280, tied): 129,135,360 parameters.
TEST(MemoryPlanTest, Mamba130mTiedEmbeddingCountedOnce) {
  const MemoryPlan p = Plan("mamba_130m");
  EXPECT_EQ(p.parameters, 129135360);
  EXPECT_EQ(p.globals_parameters, 50280 * 768 + 768);
  // Both ends of a pipeline hold the tied matrix: the first to embed, the last as its head.
  EXPECT_EQ(p.embedding_bytes, 2 * 50280 * 768);
  EXPECT_EQ(p.head_bytes, 2 * 50280 * 768 + 4 * 768);
  ExpectConsistent(p);
}

TEST(MemoryPlanTest, RejectsOtherWeightDtypes) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/jamba_tiny");
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<MemoryPlan> plan = PlanMemory(*c, DType::kI32);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace jamba
