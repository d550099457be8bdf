// Loading part of a model, as the cluster's workers do: a range of layers (only the shard files
// holding them are opened), a subset of experts, and pipelined shards that together compute
// exactly what transformers computes.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/model.h"
#include "engine/model/workspace.h"
#include "gtest/gtest.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

TEST(ShardTest, MiddleLayersOfAShardedCheckpointOpenOnlyTheirFile) {
  auto backend = CreateCpuBackend();
  auto ckpt = Checkpoint::Open(ModelFixtureDir("jamba_auto_dtrank"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint* raw = ckpt->get();
  LoadOptions options;
  options.shard.layer_begin = 2;
  options.shard.layer_end = 4;
  auto model = Model::Load(*std::move(ckpt), options, backend.get());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE((*model)->has_embedding());
  EXPECT_FALSE((*model)->has_head());
  EXPECT_EQ((*model)->weights().layers.size(), 2u);
  // The index puts layers 2 and 3 in the second of three files.
  EXPECT_EQ(raw->OpenedFiles(), std::vector<std::string>{"model-00002-of-00003.safetensors"});
}

TEST(ShardTest, ExpertSubsetLoadsOnlyThoseExperts) {
  auto backend = CreateCpuBackend();
  LoadOptions all, even;
  even.shard.want_expert = [](int64_t, int64_t e) { return e % 2 == 0; };
  auto full = Model::Load(ModelFixtureDir("jamba_moe_gqa"), all, backend.get());
  auto half = Model::Load(ModelFixtureDir("jamba_moe_gqa"), even, backend.get());
  ASSERT_TRUE(full.ok() && half.ok());
  const ModelConfig& c = (*half)->config();
  int moe_layers = 0;
  for (const LayerWeights& lw : (*half)->weights().layers) {
    if (lw.spec.ffn != FfnKind::kMoe) continue;
    ++moe_layers;
    ASSERT_EQ(static_cast<int64_t>(lw.moe.experts.size()), c.num_experts);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      EXPECT_EQ(Present(lw.moe.experts[e].down), e % 2 == 0) << "layer " << lw.layer_index;
    }
    EXPECT_TRUE(Present(lw.moe.router));  // the router is needed to route to remote experts
  }
  EXPECT_GT(moe_layers, 0);
  const int64_t expert_bytes = 3 * c.hidden_size * c.intermediate_size * 4;
  EXPECT_EQ((*full)->weight_bytes() - (*half)->weight_bytes(),
            moe_layers * (c.num_experts / 2) * expert_bytes);
}

TEST(ShardTest, ExpertsOnlyShardComputesExpertsLikeTheFormula) {
  auto backend = CreateCpuBackend();
  LoadOptions options;
  options.shard.experts_only = true;
  options.shard.want_expert = [](int64_t, int64_t e) { return e == 1 || e == 3; };
  auto model = Model::Load(ModelFixtureDir("jamba_moe_gqa"), options, backend.get());
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  EXPECT_FALSE((*model)->has_embedding());
  EXPECT_FALSE((*model)->has_head());
  int moe_layers = 0;
  for (const LayerWeights& lw : (*model)->weights().layers) {
    EXPECT_FALSE(Present(lw.input_norm));
    EXPECT_FALSE(Present(lw.mamba.in_proj) || Present(lw.attention.q_proj));
    EXPECT_FALSE(Present(lw.moe.router));
    if (lw.spec.ffn == FfnKind::kMoe) ++moe_layers;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      EXPECT_EQ((*model)->HoldsExpert(lw.layer_index, e),
                lw.spec.ffn == FfnKind::kMoe && (e == 1 || e == 3));
    }
  }
  ASSERT_GT(moe_layers, 0);
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  EXPECT_EQ((*model)->weight_bytes(), moe_layers * 2 * 3 * h * inter * 4);

  // Expert 3 of the first MoE layer against down(silu(gate x) * up x) in double, straight from
  // the checkpoint's tensors.
  int64_t layer = 0;
  while (c.layers[layer].ffn != FfnKind::kMoe) ++layer;
  auto ckpt = Checkpoint::Open(ModelFixtureDir("jamba_moe_gqa"));
  ASSERT_TRUE(ckpt.ok());
  auto read = [&](const std::string& part) {
    auto t = (*ckpt)->Get(absl::StrCat("model.layers.", layer, ".feed_forward.experts.3.", part,
                                       ".weight"));
    EXPECT_TRUE(t.ok());
    std::vector<float> v((*t)->numel());
    std::memcpy(v.data(), (*t)->data, (*t)->nbytes);
    return v;
  };
  const std::vector<float> gate = read("gate_proj"), up = read("up_proj"), down = read("down_proj");
  const int64_t n = 3;
  std::vector<float> x(n * h);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i)) * 1.5;
  Workspace ws(backend.get());
  BatchLayout layout;
  ForwardContext ctx{backend.get(), &layout, &ws, &c};
  Tensor xd = ws.Take(DType::kF32, {n, h});
  ASSERT_TRUE(backend->Upload(x.data(), x.size() * sizeof(float), xd).ok());
  Tensor yd = ws.Take(DType::kF32, {n, h});
  (*model)->ExpertForward(ctx, layer, 3, xd, yd);
  std::vector<float> y(n * h);
  ASSERT_TRUE(backend->Download(yd, y.data()).ok());
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> act(inter);
    for (int64_t i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int64_t j = 0; j < h; ++j) {
        g += static_cast<double>(gate[i * h + j]) * x[t * h + j];
        u += static_cast<double>(up[i * h + j]) * x[t * h + j];
      }
      act[i] = g / (1.0 + std::exp(-g)) * u;
    }
    for (int64_t j = 0; j < h; ++j) {
      double want = 0;
      for (int64_t i = 0; i < inter; ++i) want += static_cast<double>(down[j * inter + i]) * act[i];
      EXPECT_NEAR(y[t * h + j], want, 1e-5 * (1.0 + std::abs(want))) << "token " << t;
    }
  }
}

TEST(ShardTest, ExpertsOnlyOfAModelWithoutExpertsIsAnError) {
  auto backend = CreateCpuBackend();
  LoadOptions options;
  options.shard.experts_only = true;
  absl::Status s = Model::Load(ModelFixtureDir("mamba"), options, backend.get()).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
}

// Two shards [0, split) + [split, L), each with its own state pools, run as a pipeline.
TEST(ShardTest, PipelinedShardsMatchTransformers) {
  auto ref = LoadModelReference("jamba_moe_gqa");
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto backend = CreateCpuBackend();
  Backend* be = backend.get();
  const int64_t split = 3;
  LoadOptions first, second;
  first.shard.layer_end = split;
  second.shard.layer_begin = split;
  auto a = Model::Load(ModelFixtureDir("jamba_moe_gqa"), first, be);
  auto b = Model::Load(ModelFixtureDir("jamba_moe_gqa"), second, be);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->has_embedding() && !(*a)->has_head());
  ASSERT_TRUE(!(*b)->has_embedding() && (*b)->has_head());
  const ModelConfig& c = (*a)->config();

  struct Pools {
    std::unique_ptr<MambaStatePool> mamba;
    std::unique_ptr<KvCachePool> kv;
  };
  auto make_pools = [&](const Model& m) {
    Pools p;
    if (m.num_mamba_layers() > 0) {
      p.mamba = *MambaStatePool::Create(be, m.num_mamba_layers(), c.mamba_d_inner,
                                        c.mamba_d_state, c.mamba_d_conv, 1);
    }
    if (m.num_attention_layers() > 0) {
      p.kv = *KvCachePool::Create(be, m.num_attention_layers(), c.num_kv_heads, c.head_dim, 4, 8);
    }
    return p;
  };
  Pools pa = make_pools(**a), pb = make_pools(**b);
  const int32_t n = static_cast<int32_t>(ref->prompt.size());
  BatchLayout layout;
  layout.n_tokens = n;
  layout.kv_block_size = 4;
  layout.block_tables = {{7, 0, 5, 2, 3}};  // any blocks: positions 0..19
  layout.seqs = {SeqSlice{0, n, 0, 0, 0}};
  Workspace ws(be);
  ForwardContext ctx{be, &layout, &ws, &c};
  Tensor ids = ws.Take(DType::kI32, {n});
  ASSERT_TRUE(be->Upload(ref->prompt.data(), n * sizeof(int32_t), ids).ok());
  Tensor hidden = ws.Take(DType::kF32, {n, c.hidden_size});
  (*a)->Embed(ctx, ids, hidden);
  ASSERT_TRUE((*a)->ForwardLayers(ctx, StatePools{pa.mamba.get(), pa.kv.get()}, hidden).ok());
  ASSERT_TRUE((*b)->ForwardLayers(ctx, StatePools{pb.mamba.get(), pb.kv.get()}, hidden).ok());
  std::vector<int32_t> rows(n);
  for (int32_t i = 0; i < n; ++i) rows[i] = i;
  Tensor rows_dev = ws.Take(DType::kI32, {n});
  ASSERT_TRUE(be->Upload(rows.data(), n * sizeof(int32_t), rows_dev).ok());
  Tensor logits = ws.Take(DType::kF32, {n, c.vocab_size});
  (*b)->Logits(ctx, hidden, rows_dev, logits);
  std::vector<float> host(static_cast<size_t>(n * c.vocab_size));
  ASSERT_TRUE(be->Download(logits, host.data()).ok());
  EXPECT_LE(MaxAbsDiff(host.data(), ref->logits.data(), host.size()), 1e-4);
}

}  // namespace
}  // namespace jamba
