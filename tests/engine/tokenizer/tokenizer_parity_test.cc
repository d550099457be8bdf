// Parity of Tokenizer and StreamingDetokenizer with the Python `tokenizers` / `transformers`
// libraries on every fixture tokenizer and every corpus string (see
// tools/make_tokenizer_fixtures.py for how the expectations were produced).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/engine/tokenizer/fixture_util.h"

namespace jamba {
namespace {

using testing_util::ReadJsonFile;
using testing_util::TokenizerFixtureDir;

constexpr int kMaxReportedFailures = 5;

class TokenizerParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    corpus_ = ReadJsonFile(TokenizerFixtureDir("corpus.json"));
    ASSERT_TRUE(corpus_.is_array());
    ASSERT_GE(corpus_.size(), 500u);
    expected_ = ReadJsonFile(TokenizerFixtureDir(GetParam()) + "/expected.json");
    ASSERT_TRUE(expected_.is_object()) << GetParam();
    auto tokenizer = Tokenizer::Load(TokenizerFixtureDir(GetParam()));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(tokenizer).value();
  }

  std::string Text(size_t i) const { return corpus_[i].get<std::string>(); }
  std::vector<int32_t> Ids(const char* key, size_t i) const {
    return expected_[key][i].get<std::vector<int32_t>>();
  }
  std::string Str(const char* key, size_t i) const { return expected_[key][i].get<std::string>(); }

  // Streams `ids` through a StreamingDetokenizer and checks every delta is valid UTF-8 and the
  // deltas add up to `want`.
  void ExpectStreamingEquals(const std::vector<int32_t>& ids, bool skip_special,
                             const std::string& want, const std::string& what, int* failures) {
    StreamingDetokenizer stream(tokenizer_.get(), skip_special);
    std::string all;
    for (int32_t id : ids) {
      auto delta = stream.Push(id);
      ASSERT_TRUE(delta.ok()) << delta.status();
      if (!IsValidUtf8(*delta) && ++*failures <= kMaxReportedFailures) {
        ADD_FAILURE() << what << ": invalid UTF-8 delta after id " << id;
      }
      all += *delta;
    }
    auto rest = stream.Flush();
    ASSERT_TRUE(rest.ok()) << what << ": " << rest.status();
    all += *rest;
    if (all != want && ++*failures <= kMaxReportedFailures) {
      ADD_FAILURE() << what << " (skip_special=" << skip_special << "): streamed '" << all
                    << "' != decoded '" << want << "'";
    }
  }

  nlohmann::json corpus_;
  nlohmann::json expected_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(TokenizerParityTest, EncodeMatchesReference) {
  int failures = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    for (bool special : {true, false}) {
      auto ids = tokenizer_->Encode(Text(i), special);
      ASSERT_TRUE(ids.ok()) << ids.status();
      const auto want = Ids(special ? "encode" : "encode_no_special", i);
      if (*ids != want && ++failures <= kMaxReportedFailures) {
        ADD_FAILURE() << "corpus[" << i << "] '" << Text(i) << "' special=" << special << ": got "
                      << ::testing::PrintToString(*ids) << " want "
                      << ::testing::PrintToString(want);
      }
    }
  }
  EXPECT_EQ(failures, 0) << "of " << 2 * corpus_.size() << " encodings";
}

TEST_P(TokenizerParityTest, DecodeMatchesReference) {
  int failures = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const auto ids = Ids("encode", i);
    for (bool skip : {false, true}) {
      auto text = tokenizer_->Decode(ids, skip);
      ASSERT_TRUE(text.ok()) << text.status();
      const std::string want = Str(skip ? "decode_skip_special" : "decode", i);
      if (*text != want && ++failures <= kMaxReportedFailures) {
        ADD_FAILURE() << "corpus[" << i << "] skip=" << skip << ": got '" << *text << "' want '"
                      << want << "'";
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(TokenizerParityTest, DecodeRandomIdsMatchesReference) {
  int failures = 0;
  const size_t n = expected_["random_ids"].size();
  ASSERT_GT(n, 0u);
  for (size_t i = 0; i < n; ++i) {
    const auto ids = Ids("random_ids", i);
    for (bool skip : {false, true}) {
      auto text = tokenizer_->Decode(ids, skip);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_TRUE(IsValidUtf8(*text));
      const std::string want = Str(skip ? "random_decode_skip_special" : "random_decode", i);
      if (*text != want && ++failures <= kMaxReportedFailures) {
        ADD_FAILURE() << "random_ids[" << i << "] skip=" << skip << ": got '" << *text << "' want '"
                      << want << "'";
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(TokenizerParityTest, StreamingDetokenizerAddsUpToDecode) {
  int failures = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const auto ids = Ids("encode", i);
    ExpectStreamingEquals(ids, false, Str("decode", i), "corpus[" + std::to_string(i) + "]",
                          &failures);
    ExpectStreamingEquals(ids, true, Str("decode_skip_special", i),
                          "corpus[" + std::to_string(i) + "]", &failures);
  }
  for (size_t i = 0; i < expected_["random_ids"].size(); ++i) {
    const auto ids = Ids("random_ids", i);
    ExpectStreamingEquals(ids, false, Str("random_decode", i),
                          "random_ids[" + std::to_string(i) + "]", &failures);
    ExpectStreamingEquals(ids, true, Str("random_decode_skip_special", i),
                          "random_ids[" + std::to_string(i) + "]", &failures);
  }
  EXPECT_EQ(failures, 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerParityTest,
                         ::testing::Values("gpt_neox_bpe", "llama3_regex_bpe", "falcon_style_bpe",
                                           "jamba_spm_bpe", "metaspace_first_bpe", "llama_spm_bpe",
                                           "real_mistral"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace jamba
