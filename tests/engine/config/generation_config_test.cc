#include "engine/config/generation_config.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelConfig WithEos(std::vector<int64_t> eos) {
  ModelConfig c;
  c.vocab_size = 1000;
  c.eos_token_ids = std::move(eos);
  return c;
}

TEST(GenerationConfigTest, AddsListedStopIdsOnce) {
  ModelConfig c = WithEos({2});
  ASSERT_TRUE(MergeGenerationConfig(R"({"eos_token_id": [2, 518], "bos_token_id": 1})",
                                    "g.json", &c)
                  .ok());
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2, 518));
  ASSERT_TRUE(MergeGenerationConfig(R"({"eos_token_id": 7})", "g.json", &c).ok());
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2, 518, 7));
  ASSERT_TRUE(MergeGenerationConfig(R"({"eos_token_id": null, "max_length": 9})", "g.json", &c)
                  .ok());
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2, 518, 7));
}

TEST(GenerationConfigTest, BadFilesNameTheFileAndField) {
  ModelConfig c = WithEos({2});
  const struct {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"eos_token_id": 1000})", "g.json: eos_token_id: 1000 is outside"},
      {R"({"eos_token_id": [-1]})", "g.json: eos_token_id: -1 is outside"},
      {R"({"eos_token_id": "2"})", "g.json: eos_token_id: expected integers"},
      {R"([1, 2])", "g.json: not a JSON object"},
      {R"({"eos_token_id": )", "g.json: malformed JSON"},
      {R"({"eos_token_id": 2, "eos_token_id": 3})", "g.json: duplicate key"},
  };
  for (const auto& k : cases) {
    absl::Status s = MergeGenerationConfig(k.json, "g.json", &c);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << k.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(k.message)) << k.json;
  }
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));  // failed merges change nothing
}

TEST(GenerationConfigTest, LoadModelConfigMergesTheFolder) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("gen_config_model_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(std::string(JAMBA_TEST_DATA_DIR) + "/config/jamba_tiny/config.json",
                dir / "config.json");
  auto before = LoadModelConfig(dir.string());
  ASSERT_TRUE(before.ok()) << before.status();
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 5]})";
  auto after = LoadModelConfig(dir.string());
  ASSERT_TRUE(after.ok()) << after.status();
  std::vector<int64_t> expected = before->eos_token_ids;
  for (int64_t id : {2, 5}) {
    if (std::find(expected.begin(), expected.end(), id) == expected.end()) expected.push_back(id);
  }
  EXPECT_EQ(after->eos_token_ids, expected);
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "x"})";
  absl::Status s = LoadModelConfig(dir.string()).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("generation_config.json"));
}

}  // namespace
}  // namespace jamba
