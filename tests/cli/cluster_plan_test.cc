// The layout `jambactl cluster up` gives a model: layer ranges and expert placement.
#include "cli/cluster_plan.h"

#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/config/model_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string DemoDir() { return std::string(JAMBA_SOURCE_DIR) + "/models/jamba-demo"; }

// (layer, expert) -> the workers holding it, from the plan's --experts specs.
std::map<std::pair<int, int>, std::set<int>> Holders(const ClusterPlan& plan) {
  std::map<std::pair<int, int>, std::set<int>> out;
  for (size_t w = 0; w < plan.expert_specs.size(); ++w) {
    for (absl::string_view layer_part : absl::StrSplit(plan.expert_specs[w], ';')) {
      std::pair<absl::string_view, absl::string_view> lp = absl::StrSplit(layer_part, ':');
      int layer = 0;
      EXPECT_TRUE(absl::SimpleAtoi(lp.first, &layer)) << plan.expert_specs[w];
      for (absl::string_view e : absl::StrSplit(lp.second, ',')) {
        int expert = 0;
        EXPECT_TRUE(absl::SimpleAtoi(e, &expert)) << plan.expert_specs[w];
        out[{layer, expert}].insert(static_cast<int>(w));
      }
    }
  }
  return out;
}

class ClusterPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = LoadModelConfig(DemoDir());  // 8 layers, MoE on 1, 3, 5, 7, 4 experts
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
  }
  ModelConfig config_;
};

TEST(BalancedRangesTest, MinimisesTheLargestRange) {
  EXPECT_THAT(BalancedRanges({1, 1, 1, 1, 4}, 2), ElementsAre(Pair(0, 4), Pair(4, 5)));
  EXPECT_THAT(BalancedRanges({3, 1, 1, 1}, 2), ElementsAre(Pair(0, 1), Pair(1, 4)));
  // Largest range 9 = 4 + 5; every other split has a larger one.
  EXPECT_THAT(BalancedRanges({1, 2, 3, 4, 5, 6}, 3),
              ElementsAre(Pair(0, 3), Pair(3, 5), Pair(5, 6)));
  EXPECT_THAT(BalancedRanges({5, 5, 5}, 3), ElementsAre(Pair(0, 1), Pair(1, 2), Pair(2, 3)));
  EXPECT_THAT(BalancedRanges({2}, 1), ElementsAre(Pair(0, 1)));
}

// The demo model (H 256, I 288, vocab 4096, Mamba Di 512 N 16 R 16 K 4, attention 8/2 heads
// of 32 on layers 2 and 6, MoE with 4 experts top-2 on the odd layers), per token, by hand:
// Mamba mixer 262144 + 2048 + 24576 + 8192 + 131072 projections and conv + 300 * 8192 scan =
// 2885632 multiply-adds, attention 163840, dense MLP 221184, router 1024, head 1048576.
TEST_F(ClusterPlanTest, CostsEachLayersWork) {
  EXPECT_EQ(LayerWorkerCost(config_, 0, false), 2885632 + 221184);
  EXPECT_EQ(LayerWorkerCost(config_, 1, false), 2885632 + 1024);
  EXPECT_EQ(LayerWorkerCost(config_, 1, true), 2885632 + 1024 + 2 * 221184);
  EXPECT_EQ(LayerWorkerCost(config_, 2, false), 163840 + 221184);
  EXPECT_EQ(LayerWorkerCost(config_, 7, false), 2885632 + 1024 + 1048576);
  // [0, 4) = 9265152 and [4, 8) = 10313728: the least largest stage.
  auto plan = PlanCluster(config_, 2, 2, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->layer_ranges, ElementsAre(Pair(0, 4), Pair(4, 8)));
  // As many stages as layers: one each.
  plan = PlanCluster(config_, 8, 0, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(plan->layer_ranges[i], std::make_pair(i, i + 1));
  EXPECT_TRUE(plan->expert_specs.empty());
}

// The README's 282M benchmark Jamba (Jamba-v0.1's schedule with H 1024, I 768, vocab 32768,
// 32/8 heads, Di 2048, N 16, R 64): Mamba layers 16457728 multiply-adds, + MLP 2359296 or
// + router 16384, attention 2621440, head 33554432 on layer 7. Even halves would give the
// second stage, with the head, 90.3M against 70.6M; the balanced cut after layer 5 gives
// 75.6M and 85.3M.
TEST(ClusterPlanBalanceTest, TheHeadPullsTheCutForward) {
  auto config = ParseModelConfig(R"({
    "model_type": "jamba", "hidden_size": 1024, "intermediate_size": 768,
    "num_hidden_layers": 8, "vocab_size": 32768, "num_attention_heads": 32,
    "num_key_value_heads": 8, "attn_layer_period": 8, "attn_layer_offset": 4,
    "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 16,
    "num_experts_per_tok": 2, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2,
    "mamba_dt_rank": 64, "max_position_embeddings": 262144})",
                                 "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(LayerWorkerCost(*config, 0, false), 16457728 + 2359296);
  EXPECT_EQ(LayerWorkerCost(*config, 4, false), 2621440 + 2359296);
  EXPECT_EQ(LayerWorkerCost(*config, 7, false), 16457728 + 16384 + 33554432);
  auto plan = PlanCluster(*config, 2, 2, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->layer_ranges, ElementsAre(Pair(0, 5), Pair(5, 8)));
}

TEST_F(ClusterPlanTest, EveryExpertOnceWithoutReplicas) {
  auto plan = PlanCluster(config_, 2, 3, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->expert_specs.size(), 3u);
  auto holders = Holders(*plan);
  ASSERT_EQ(holders.size(), 16u);  // 4 MoE layers x 4 experts
  std::map<int, int> per_worker;
  for (const auto& [key, workers] : holders) {
    EXPECT_EQ(workers.size(), 1u) << key.first << ":" << key.second;
    EXPECT_EQ(config_.layers[key.first].ffn, FfnKind::kMoe);
    ++per_worker[*workers.begin()];
  }
  // 16 pairs dealt round-robin over 3 workers: 6, 5, 5.
  EXPECT_THAT(per_worker, ElementsAre(Pair(0, 6), Pair(1, 5), Pair(2, 5)));
}

TEST_F(ClusterPlanTest, ReplicasSitOnDistinctWorkers) {
  auto plan = PlanCluster(config_, 2, 3, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const auto& [key, workers] : Holders(*plan)) {
    EXPECT_EQ(workers.size(), 2u) << key.first << ":" << key.second;
  }
}

TEST_F(ClusterPlanTest, RejectsLayoutsThatDoNotFit) {
  EXPECT_THAT(PlanCluster(config_, 0, 2, 1).status().message(), HasSubstr("layer-workers"));
  EXPECT_THAT(PlanCluster(config_, 9, 2, 1).status().message(), HasSubstr("layer-workers"));
  EXPECT_THAT(PlanCluster(config_, 2, 2, 3).status().message(), HasSubstr("replicas"));
  EXPECT_THAT(PlanCluster(config_, 2, 2, 0).status().message(), HasSubstr("replicas"));
  EXPECT_THAT(PlanCluster(config_, 2, 17, 1).status().message(), HasSubstr("idle"));
  EXPECT_THAT(PlanCluster(config_, 2, -1, 1).status().message(), HasSubstr("expert-workers"));
}

TEST_F(ClusterPlanTest, DevicesAreDealtRoundRobinInStartOrder) {
  auto plan = PlanCluster(config_, 3, 2, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->expert_devices, ElementsAre("cpu", "cpu"));
  EXPECT_THAT(plan->layer_devices, ElementsAre("cpu", "cpu", "cpu"));
  // Five workers on four GPUs: expert 0, 1, then layer 0, 1, 2; the fifth wraps around.
  AssignDevices({"cuda:0", "cuda:1", "cuda:2", "cuda:3"}, &*plan);
  EXPECT_THAT(plan->expert_devices, ElementsAre("cuda:0", "cuda:1"));
  EXPECT_THAT(plan->layer_devices, ElementsAre("cuda:2", "cuda:3", "cuda:0"));
  AssignDevices({"cuda"}, &*plan);
  EXPECT_THAT(plan->expert_devices, ElementsAre("cuda", "cuda"));
  EXPECT_THAT(plan->layer_devices, ElementsAre("cuda", "cuda", "cuda"));
  // Without expert workers the layer workers start the deal.
  auto layers_only = PlanCluster(config_, 2, 0, 1);
  ASSERT_TRUE(layers_only.ok()) << layers_only.status();
  AssignDevices({"cuda:1", "cpu"}, &*layers_only);
  EXPECT_TRUE(layers_only->expert_devices.empty());
  EXPECT_THAT(layers_only->layer_devices, ElementsAre("cuda:1", "cpu"));
}

TEST(ClusterPlanNoExpertsTest, ExpertWorkersNeedAnMoeModel) {
  auto c = LoadModelConfig(std::string(JAMBA_TEST_DATA_DIR) + "/models/mamba");
  ASSERT_TRUE(c.ok()) << c.status();
  auto plan = PlanCluster(*c, 2, 1, 1);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("no MoE experts"));
  EXPECT_TRUE(PlanCluster(*c, 2, 0, 1).ok());
}

}  // namespace
}  // namespace jamba
