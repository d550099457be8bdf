// SizeWorkers: how a layout splits the engine's accounting over processes. The conservation
// checks would fail if a layer, an expert, the embedding, the head or a byte of state were
// dropped or counted twice.
#include "cli/size_command.h"

#include <string>

#include "gtest/gtest.h"

namespace jamba {
namespace {

const std::string kFixtures = std::string(JAMBA_TEST_DATA_DIR) + "/config";

struct Sized {
  ModelConfig config;
  MemoryPlan plan;
};

Sized Load(const std::string& fixture) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kFixtures + "/" + fixture);
  EXPECT_TRUE(c.ok()) << c.status();
  absl::StatusOr<MemoryPlan> p = PlanMemory(*c, DType::kBF16);
  EXPECT_TRUE(p.ok()) << p.status();
  return {*c, *p};
}

int64_t SumWeights(const std::vector<WorkerSize>& ws) {
  int64_t n = 0;
  for (const WorkerSize& w : ws) n += w.weight_bytes;
  return n;
}

TEST(SizeWorkersTest, ExpertWorkersTakeTheExpertsWithReplicas) {
  const Sized s = Load("jamba_1_5_large");
  for (int32_t replicas : {1, 2}) {
    absl::StatusOr<ClusterPlan> layout = PlanCluster(s.config, 4, 8, replicas);
    ASSERT_TRUE(layout.ok()) << layout.status();
    const std::vector<WorkerSize> ws = SizeWorkers(s.config, s.plan, *layout, 3, 5000);
    ASSERT_EQ(ws.size(), 12u);
    int64_t experts = 0, expert_bytes = 0, state = 0, kv = 0, mamba = 0;
    for (const WorkerSize& w : ws) {
      if (w.expert_worker) {
        experts += w.experts;
        expert_bytes += w.weight_bytes;
      } else {
        EXPECT_EQ(w.experts, 0);
        state += w.state_bytes;
        kv += w.kv_bytes_per_token;
        mamba += w.mamba_bytes_per_sequence;
      }
    }
    EXPECT_EQ(experts, 36 * 16 * replicas);
    EXPECT_EQ(expert_bytes, replicas * s.plan.expert_bytes);
    EXPECT_EQ(SumWeights(ws), s.plan.weight_bytes + (replicas - 1) * s.plan.expert_bytes);
    EXPECT_EQ(kv, s.plan.kv_bytes_per_token);
    EXPECT_EQ(mamba, s.plan.mamba_bytes_per_sequence);
    EXPECT_EQ(state, 3 * (5000 * s.plan.kv_bytes_per_token + s.plan.mamba_bytes_per_sequence));
  }
}

TEST(SizeWorkersTest, WithoutExpertWorkersLayerWorkersHoldTheirExperts) {
  const Sized s = Load("jamba_v0_1");
  absl::StatusOr<ClusterPlan> layout = PlanCluster(s.config, 3, 0, 1);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const std::vector<WorkerSize> ws = SizeWorkers(s.config, s.plan, *layout, 1, 100);
  ASSERT_EQ(ws.size(), 3u);
  EXPECT_EQ(SumWeights(ws), s.plan.weight_bytes);
  // Each worker holds its range's layers with their experts (MoE on the odd layers), the
  // first also the embedding, the last the head.
  const auto& r = layout->layer_ranges;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ws[i].layer_begin, r[i].first);
    EXPECT_EQ(ws[i].layer_end, r[i].second);
    // Odd layers in [begin, end).
    EXPECT_EQ(ws[i].experts, (r[i].second / 2 - r[i].first / 2) * 16);
  }
  EXPECT_EQ(ws[0].weight_bytes,
            s.plan.LayerBytes(0, r[0].second, true) + s.plan.embedding_bytes);
  EXPECT_EQ(ws[2].weight_bytes,
            s.plan.LayerBytes(r[2].first, 32, true) + s.plan.head_bytes);
}

TEST(SizeWorkersTest, TiedEmbeddingIsHeldByBothEnds) {
  const Sized s = Load("mamba_130m");
  absl::StatusOr<ClusterPlan> layout = PlanCluster(s.config, 2, 0, 1);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const std::vector<WorkerSize> ws = SizeWorkers(s.config, s.plan, *layout, 1, 100);
  // The matrix (50280 x 768 bf16) once more than the model's own total.
  EXPECT_EQ(SumWeights(ws), s.plan.weight_bytes + 2 * 50280 * 768);
  EXPECT_EQ(ws[0].kv_bytes_per_token, 0);
}

}  // namespace
}  // namespace jamba
