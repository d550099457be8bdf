#include "engine/checkpoint/checkpoint.h"

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/checkpoint/test_files.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing_files::ReadBytes;
using testing_files::ReadLengthField;
using testing_files::SafetensorsBytes;
using testing_files::TempDir;
using testing_files::WriteBytes;
using Json = nlohmann::json;

const std::string kModels = std::string(JAMBA_TEST_DATA_DIR) + "/models";
const std::string kSharded = kModels + "/jamba_auto_dtrank";
const std::string kShard1 = "model-00001-of-00003.safetensors";
const std::string kShard2 = "model-00002-of-00003.safetensors";
const std::string kShard3 = "model-00003-of-00003.safetensors";

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// The weight_map of an index, read directly with nlohmann (independent of the parser).
std::map<std::string, std::string> ReferenceWeightMap(const std::string& dir) {
  Json index = Json::parse(ReadBytes(dir + "/model.safetensors.index.json"));
  return index["weight_map"].get<std::map<std::string, std::string>>();
}

// Tensor names declared by a safetensors header, read directly from the bytes.
std::set<std::string> ReferenceTensorNames(const std::string& path) {
  const std::string bytes = ReadBytes(path);
  Json header = Json::parse(bytes.substr(8, ReadLengthField(bytes)));
  std::set<std::string> names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() != "__metadata__") names.insert(it.key());
  }
  return names;
}

// ---- Real checkpoints written by transformers ----------------------------------------------

struct FixtureCase {
  std::string dir;
  Architecture arch;
  DType dtype;            // of every weight
  std::string embedding;  // name of the [vocab, hidden] embedding table
};

class FixtureCheckpointTest : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(FixtureCheckpointTest, OpensAndServesEveryTensor) {
  const FixtureCase& p = GetParam();
  const std::string dir = kModels + "/" + p.dir;
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint& c = **ckpt;
  EXPECT_EQ(c.config().arch, p.arch);
  EXPECT_EQ(c.dir(), dir);

  // Names: exactly those the index (or the single header) declares.
  std::set<std::string> want;
  const bool sharded = std::filesystem::exists(dir + "/model.safetensors.index.json");
  if (sharded) {
    for (const auto& entry : ReferenceWeightMap(dir)) want.insert(entry.first);
  } else {
    want = ReferenceTensorNames(dir + "/model.safetensors");
  }
  const std::vector<std::string> names = c.TensorNames();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));

  for (const std::string& name : names) {
    EXPECT_TRUE(c.Has(name));
    absl::StatusOr<const SafetensorsTensor*> t = c.Get(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->name, name);
    EXPECT_EQ((*t)->dtype, p.dtype) << name;
    absl::StatusOr<const SafetensorsTensor*> checked = c.GetChecked(name, (*t)->shape);
    ASSERT_TRUE(checked.ok()) << checked.status();
    EXPECT_EQ(*checked, *t);
  }
  EXPECT_FALSE(c.Has("model.layers.999.nothing"));

  // The embedding's shape agrees with config.json (read by the config parser).
  absl::StatusOr<const SafetensorsTensor*> embedding =
      c.GetChecked(p.embedding, {c.config().vocab_size, c.config().hidden_size});
  EXPECT_TRUE(embedding.ok()) << embedding.status();
}

INSTANTIATE_TEST_SUITE_P(
    Models, FixtureCheckpointTest,
    ::testing::Values(
        FixtureCase{"jamba_moe_gqa", Architecture::kJamba, DType::kF32,
                    "model.embed_tokens.weight"},
        FixtureCase{"jamba_auto_dtrank", Architecture::kJamba, DType::kBF16,
                    "model.embed_tokens.weight"},
        FixtureCase{"jamba_dense", Architecture::kJamba, DType::kF16, "model.embed_tokens.weight"},
        FixtureCase{"mamba", Architecture::kMamba, DType::kF32, "backbone.embeddings.weight"},
        FixtureCase{"falcon_mamba", Architecture::kFalconMamba, DType::kF32,
                    "backbone.embeddings.weight"},
        FixtureCase{"mixtral", Architecture::kMixtral, DType::kF32, "model.embed_tokens.weight"}),
    [](const ::testing::TestParamInfo<FixtureCase>& info) { return info.param.dir; });

TEST(ShardedCheckpointTest, ResolvesEachTensorToItsIndexShard) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(kSharded);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::map<std::string, std::string> weight_map = ReferenceWeightMap(kSharded);
  std::map<std::string, std::set<std::string>> by_shard;
  for (const auto& [name, shard] : weight_map) by_shard[shard].insert(name);
  ASSERT_EQ(by_shard.size(), 3u);
  for (const auto& [name, shard] : weight_map) {
    absl::StatusOr<const SafetensorsTensor*> t = (*ckpt)->Get(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->file, kSharded + "/" + shard) << name;
  }
  // The fixture's shards hold exactly what the index says (a check of the fixture itself).
  for (const auto& [shard, names] : by_shard) {
    EXPECT_EQ(ReferenceTensorNames(kSharded + "/" + shard), names) << shard;
  }
  EXPECT_THAT((*ckpt)->OpenedFiles(), ElementsAre(kShard1, kShard2, kShard3));
}

TEST(ShardedCheckpointTest, OpensOnlyTheShardsOfRequestedTensors) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(kSharded);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint& c = **ckpt;
  EXPECT_THAT(c.OpenedFiles(), IsEmpty());

  // Listing and Has() read only the index.
  for (const std::string& name : c.TensorNames()) EXPECT_TRUE(c.Has(name));
  EXPECT_THAT(c.OpenedFiles(), IsEmpty());

  // Layers 2 and 3 live in shard 2 (per the index).
  const std::map<std::string, std::string> weight_map = ReferenceWeightMap(kSharded);
  int requested = 0;
  for (const auto& [name, shard] : weight_map) {
    if (name.rfind("model.layers.2.", 0) != 0 && name.rfind("model.layers.3.", 0) != 0) continue;
    ASSERT_EQ(shard, kShard2) << name;
    ASSERT_TRUE(c.Get(name).ok()) << name;
    ++requested;
  }
  EXPECT_GT(requested, 10);
  EXPECT_THAT(c.OpenedFiles(), ElementsAre(kShard2));

  ASSERT_TRUE(c.Get("lm_head.weight").ok());
  EXPECT_THAT(c.OpenedFiles(), ElementsAre(kShard2, kShard3));
  // An unknown name opens nothing.
  EXPECT_EQ(c.Get("model.layers.9.x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.OpenedFiles(), ElementsAre(kShard2, kShard3));
}

// Copies config.json and the index of the sharded fixture into `dir`, plus the given shards.
void CopySharded(const TempDir& dir, const std::vector<std::string>& shards) {
  for (const std::string& f :
       {std::string("config.json"), std::string("model.safetensors.index.json")}) {
    WriteBytes(dir / f, ReadBytes(kSharded + "/" + f));
  }
  for (const std::string& f : shards) WriteBytes(dir / f, ReadBytes(kSharded + "/" + f));
}

TEST(ShardedCheckpointTest, OtherShardsAreNeverRead) {
  // A worker that serves layers 2-3 needs only shard 2: the others may be absent or garbage.
  TempDir dir;
  CopySharded(dir, {kShard2});
  WriteBytes(dir / kShard3, "garbage, not a safetensors file");
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<const SafetensorsTensor*> q =
      (*ckpt)->GetChecked("model.layers.2.self_attn.q_proj.weight", {40, 40});
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->dtype, DType::kBF16);

  // Asking for a tensor of the missing shard names the shard and the tensor.
  absl::StatusOr<const SafetensorsTensor*> embed = (*ckpt)->Get("model.embed_tokens.weight");
  ASSERT_FALSE(embed.ok());
  EXPECT_EQ(embed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(embed.status()), HasSubstr(dir / kShard1 + ": cannot open"));
  EXPECT_THAT(Message(embed.status()), HasSubstr("tensor 'model.embed_tokens.weight'"));

  // A corrupt shard: its own error plus the requested tensor.
  absl::StatusOr<const SafetensorsTensor*> head = (*ckpt)->Get("lm_head.weight");
  ASSERT_FALSE(head.ok());
  EXPECT_EQ(head.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(head.status()), HasSubstr(dir / kShard3 + ": header length"));
  EXPECT_THAT(Message(head.status()), HasSubstr("tensor 'lm_head.weight'"));
  EXPECT_THAT((*ckpt)->OpenedFiles(), ElementsAre(kShard2));
}

TEST(ShardedCheckpointTest, ConcurrentGetsOpenEachShardOnce) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(kSharded);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::vector<std::string> names = (*ckpt)->TensorNames();
  std::vector<std::vector<const SafetensorsTensor*>> seen(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (const std::string& name : names) {
        absl::StatusOr<const SafetensorsTensor*> t = (*ckpt)->Get(name);
        seen[i].push_back(t.ok() ? *t : nullptr);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(seen[i], seen[0]);  // same objects: each shard was parsed once
  }
  for (const SafetensorsTensor* t : seen[0]) EXPECT_NE(t, nullptr);
}

// ---- Broken checkpoint folders --------------------------------------------------------------

const std::string kTinyShard =
    SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("n":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}})",
                     std::string(12, '\0'));

// A folder with the tiny Jamba config and `index` as its index (and one valid shard "a").
std::string FolderWithIndex(const TempDir& dir, const std::string& index) {
  WriteBytes(dir / "config.json", ReadBytes(kModels + "/jamba_moe_gqa/config.json"));
  WriteBytes(dir / "model.safetensors.index.json", index);
  WriteBytes(dir / "a.safetensors", kTinyShard);
  return dir / "model.safetensors.index.json";
}

struct BadIndex {
  std::string name;
  std::string index;
  std::string want;
};

void PrintTo(const BadIndex& b, std::ostream* os) { *os << b.name; }

class BadIndexTest : public ::testing::TestWithParam<BadIndex> {};

TEST_P(BadIndexTest, OpenFailsNamingIndexAndTensor) {
  TempDir dir;
  const std::string index_path = FolderWithIndex(dir, GetParam().index);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr(index_path + ": " + GetParam().want));
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, BadIndexTest,
    ::testing::Values(
        BadIndex{"bad_json", R"({"weight_map": {)", "malformed JSON at byte"},
        BadIndex{"not_object", "[]", "must be a JSON object, got array"},
        BadIndex{"no_weight_map", R"({"metadata": {}})", "missing 'weight_map'"},
        BadIndex{"weight_map_list", R"({"weight_map": ["a.safetensors"]})",
                 "'weight_map' must be an object, got array"},
        BadIndex{"empty_weight_map", R"({"weight_map": {}})", "'weight_map' lists no tensors"},
        BadIndex{"shard_number", R"({"weight_map": {"w": 3}})",
                 "tensor 'w': shard must be a string, got number"},
        BadIndex{"parent_dir", R"({"weight_map": {"w": "../a.safetensors"}})",
                 "tensor 'w': shard '../a.safetensors' is not a file name in the checkpoint "
                 "folder"},
        BadIndex{"absolute", R"({"weight_map": {"w": "/etc/passwd"}})",
                 "tensor 'w': shard '/etc/passwd' is not a file name"},
        BadIndex{"subdir", R"({"weight_map": {"w": "sub/a.safetensors"}})",
                 "tensor 'w': shard 'sub/a.safetensors' is not a file name"},
        BadIndex{"dotdot", R"({"weight_map": {"w": ".."}})", "tensor 'w': shard '..' is not"},
        BadIndex{"empty_name", R"({"weight_map": {"w": ""}})", "tensor 'w': shard '' is not"},
        BadIndex{"duplicate", R"({"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}})",
                 "duplicate key 'w' (in 'weight_map')"}),
    [](const ::testing::TestParamInfo<BadIndex>& info) { return info.param.name; });

TEST(CheckpointTest, DotsInsideAShardNameAreFine) {
  TempDir dir;
  FolderWithIndex(dir, R"({"weight_map": {"w": "a..b.safetensors"}})");
  WriteBytes(dir / "a..b.safetensors", kTinyShard);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->Get("w").ok());
}

TEST(CheckpointTest, IndexedTensorMissingFromItsShard) {
  TempDir dir;
  FolderWithIndex(dir, R"({"weight_map": {"w": "a.safetensors", "gone": "a.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->Get("w").ok());
  absl::StatusOr<const SafetensorsTensor*> t = (*ckpt)->Get("gone");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(t.status()),
              HasSubstr(dir / "a.safetensors" +
                        ": tensor 'gone' is listed in model.safetensors.index.json but missing"));
  // Tensors the shard holds but the index does not list are not part of the checkpoint.
  EXPECT_FALSE((*ckpt)->Has("n"));
}

TEST(CheckpointTest, IndexPointsToMissingShard) {
  TempDir dir;
  FolderWithIndex(dir, R"({"weight_map": {"w": "a.safetensors", "x": "nope.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();  // shards are checked when first needed
  absl::StatusOr<const SafetensorsTensor*> t = (*ckpt)->Get("x");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(t.status()), HasSubstr(dir / "nope.safetensors: cannot open"));
  EXPECT_THAT(Message(t.status()), HasSubstr("tensor 'x'"));
  EXPECT_THAT((*ckpt)->OpenedFiles(), IsEmpty());
}

TEST(CheckpointTest, GetCheckedNamesFileTensorAndShapes) {
  TempDir dir;
  FolderWithIndex(dir, R"({"weight_map": {"w": "a.safetensors", "n": "a.safetensors"}})");
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::string file = dir / "a.safetensors";

  EXPECT_TRUE((*ckpt)->GetChecked("w", {2}).ok());
  absl::StatusOr<const SafetensorsTensor*> t = (*ckpt)->GetChecked("w", {2, 1});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(t.status()),
              HasSubstr(file + ": tensor 'w': expected shape [2, 1], got [2]"));

  t = (*ckpt)->GetChecked("n", {1});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(Message(t.status()),
              HasSubstr(file + ": tensor 'n': expected dtype f32, bf16 or f16, got i32"));

  t = (*ckpt)->GetChecked("absent", {1});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(t.status()), HasSubstr(dir.path() + ": tensor 'absent' not found"));
}

TEST(CheckpointTest, CorruptSingleFileFailsAtOpen) {
  TempDir dir;
  WriteBytes(dir / "config.json", ReadBytes(kModels + "/mamba/config.json"));
  std::string bytes = ReadBytes(kModels + "/mamba/model.safetensors");
  bytes.resize(bytes.size() - 100);  // truncated download
  WriteBytes(dir / "model.safetensors", bytes);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr(dir / "model.safetensors: tensor '"));
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("run past the end of the data section"));
}

TEST(CheckpointTest, MissingFiles) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr(dir / "config.json"));

  WriteBytes(dir / "config.json", ReadBytes(kModels + "/mixtral/config.json"));
  ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ckpt.status()),
              HasSubstr(dir.path() +
                        ": neither model.safetensors.index.json nor model.safetensors exists"));
}

TEST(CheckpointTest, BadConfigFailsNamingConfig) {
  TempDir dir;
  WriteBytes(dir / "config.json", R"({"model_type": "llama"})");
  WriteBytes(dir / "model.safetensors", kTinyShard);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ckpt.status()),
              HasSubstr(dir / "config.json: unsupported model_type 'llama'"));
}

TEST(CheckpointTest, ParseSafetensorsIndexDirectly) {
  absl::StatusOr<std::map<std::string, std::string>> map = ParseSafetensorsIndex(
      R"({"metadata": {"total_size": 3}, "weight_map": {"b": "s2", "a": "s1"}})", "idx");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(*map, (std::map<std::string, std::string>{{"a", "s1"}, {"b", "s2"}}));
  absl::StatusOr<std::map<std::string, std::string>> bad =
      ParseSafetensorsIndex(std::string(100, '[') + std::string(100, ']'), "idx");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("idx: JSON nested deeper than 64 levels"));
}

TEST(CheckpointFingerprintTest, IdentifiesContentNotLocation) {
  auto a = Checkpoint::Open(kModels + "/jamba_moe_gqa");
  auto b = Checkpoint::Open(kModels + "/mixtral");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->fingerprint().size(), 16u);
  EXPECT_EQ((*a)->fingerprint().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE((*a)->fingerprint(), (*b)->fingerprint());

  TempDir dir;
  for (const char* f : {"config.json", "model.safetensors"}) {
    WriteBytes(dir / f, ReadBytes(kModels + "/jamba_moe_gqa/" + f));
  }
  auto copy = Checkpoint::Open(dir.path());
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->fingerprint(), (*a)->fingerprint());
  // A different config (here: one more space) is a different checkpoint.
  WriteBytes(dir / "config.json", ReadBytes(kModels + "/jamba_moe_gqa/config.json") + " ");
  auto changed = Checkpoint::Open(dir.path());
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_NE((*changed)->fingerprint(), (*a)->fingerprint());
}

}  // namespace
}  // namespace jamba
