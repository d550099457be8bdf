// Int8 experts (LoadOptions::int8_experts) end to end on the MoE fixtures. The fixture's
// expert matrices are first replaced by their own int8 dequantisation (scale * q, written as
// f32), so the f32 engine and the int8 engine hold the same numbers: their logits may differ
// only by f32 rounding (sum x (s q) against s sum x q), and their greedy tokens not at all.
// Loading a checkpoint already on the int8 grid reproduces that grid exactly, which is also
// checked through the weight bytes (1 per expert weight + 4 per row scale). On the CPU backend
// and on the CUDA backend (skipped where the build has none or no GPU is present).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/model/int8_quantize.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/generator.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/dtype.h"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

namespace fs = std::filesystem;

float AsF32(const uint8_t* p, DType t) {
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return t == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
}

// Copies fixture `name` to `dir` with every tensor whose name has ".experts." replaced by its
// per-row int8 dequantisation in f32. Returns the number of expert weights rewritten.
int64_t WriteQuantisedCopy(const std::string& name, const std::string& dir) {
  fs::create_directories(dir);
  for (const char* f : {"config.json", "generation_config.json"}) {
    const fs::path src = fs::path(ModelFixtureDir(name)) / f;
    if (fs::exists(src))
      fs::copy_file(src, fs::path(dir) / f, fs::copy_options::overwrite_existing);
  }
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(ModelFixtureDir(name));
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  std::map<std::string, SafetensorsWriteTensor> out;
  int64_t rewritten = 0;
  for (const std::string& t : (*ckpt)->TensorNames()) {
    absl::StatusOr<const SafetensorsTensor*> got = (*ckpt)->Get(t);
    EXPECT_TRUE(got.ok()) << got.status();
    const SafetensorsTensor& st = **got;
    SafetensorsWriteTensor w{st.dtype, st.shape,
                             std::string(reinterpret_cast<const char*>(st.data), st.nbytes)};
    if (t.find(".experts.") != std::string::npos && st.shape.size() >= 2) {
      const int64_t cols = st.shape.back(), rows = st.numel() / cols;
      std::vector<float> v(st.numel());
      for (int64_t i = 0; i < st.numel(); ++i)
        v[i] = AsF32(st.data + i * DTypeSize(st.dtype), st.dtype);
      std::vector<int8_t> q(v.size());
      std::vector<float> scale(rows);
      QuantizeRowsInt8(v.data(), rows, cols, q.data(), scale.data());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) v[r * cols + c] = scale[r] * q[r * cols + c];
      w.dtype = DType::kF32;
      w.bytes.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
      rewritten += st.numel();
    }
    out.emplace(t, std::move(w));
  }
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", out, {{"format", "pt"}}).ok());
  return rewritten;
}

// (fixture, device)
class Int8ExpertsTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(Int8ExpertsTest, SameLogitsAndTokensAsF32OnTheInt8Grid) {
  const auto& [fixture, device] = GetParam();
  absl::StatusOr<std::unique_ptr<Backend>> created = CreateBackend(device);
  if (absl::IsUnavailable(created.status())) GTEST_SKIP() << created.status();
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Backend> backend = *std::move(created);
  const std::string dir = ::testing::TempDir() + "/int8_" + fixture + "_" + device;
  const int64_t expert_weights = WriteQuantisedCopy(fixture, dir);
  ASSERT_GT(expert_weights, 0);
  absl::StatusOr<ModelReference> ref = LoadModelReference(fixture);
  ASSERT_TRUE(ref.ok()) << ref.status();

  auto make = [&](bool int8) {
    EngineOptions o;
    o.weight_dtype = DType::kF32;
    o.int8_experts = int8;
    o.max_sequences = 2;
    o.kv_cache_tokens = 512;
    auto e = Engine::Create(dir, o, backend.get());
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  };
  std::unique_ptr<Engine> f32 = make(false), int8 = make(true);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(int8, nullptr);

  // Every expert weight: 4 bytes -> 1, plus a 4-byte scale per row.
  const int64_t saved = f32->Stats().weight_bytes - int8->Stats().weight_bytes;
  EXPECT_GT(saved, 2 * expert_weights);
  EXPECT_LT(saved, 3 * expert_weights);

  auto logits = [&](Engine* e) {
    auto seq = e->AddSequence();
    EXPECT_TRUE(seq.ok());
    StepItem item{*seq, absl::MakeConstSpan(ref->prompt), LogitsRows::kAll};
    auto out = e->Step(absl::MakeConstSpan(&item, 1));
    EXPECT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(e->RemoveSequence(*seq).ok());
    return out.ok() ? out->logits : std::vector<float>{};
  };
  const std::vector<float> a = logits(f32.get()), b = logits(int8.get());
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_LE(MaxAbsDiff(a.data(), b.data(), a.size()), 1e-5);

  GenerateRequest request;
  request.prompt = ref->prompt;
  request.params.temperature = 0.0f;
  request.params.max_new_tokens = 16;
  request.params.ignore_eos = true;
  auto ga = Generate(f32.get(), nullptr, request);
  auto gb = Generate(int8.get(), nullptr, request);
  ASSERT_TRUE(ga.ok() && gb.ok());
  EXPECT_EQ(gb->token_ids, ga->token_ids);
}

INSTANTIATE_TEST_SUITE_P(MoeFixtures, Int8ExpertsTest,
                         ::testing::Combine(::testing::Values("jamba_moe_gqa", "mixtral"),
                                            ::testing::Values("cpu", "cuda")),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

}  // namespace
}  // namespace jamba
