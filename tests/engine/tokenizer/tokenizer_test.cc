// Tokenizer behaviour on small hand-written tokenizer.json files whose results are worked out
// by hand, plus error handling and speed on the fixture tokenizers.
#include "engine/tokenizer/tokenizer.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/tokenizer/streaming_detokenizer.h"
#include "tests/engine/tokenizer/fixture_util.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

// A SentencePiece-style BPE: merges b+c (rank 0), a+b (rank 1), a+bc (rank 2), ▁+a (rank 3).
constexpr char kSpmJson[] = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true, "normalized": false},
    {"id": 1, "content": "<s>", "special": true, "normalized": false},
    {"id": 2, "content": "</s>", "special": true, "normalized": false},
    {"id": 13, "content": "<M>", "special": true, "normalized": false, "lstrip": true,
     "rstrip": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                    "split": false},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "fuse_unk": true,
    "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "c": 5, "ab": 6, "bc": 7,
              "abc": 8, "\u2581": 9, "\u2581a": 10, "<0xC3>": 11, "<0xA9>": 12},
    "merges": ["b c", "a b", "a bc", "\u2581 a"]}
})";

constexpr char kSpmConfig[] = R"({"bos_token": "<s>", "eos_token": {"content": "</s>"},
                                  "add_bos_token": true})";

std::unique_ptr<Tokenizer> MakeSpm() {
  auto t = Tokenizer::FromJson(kSpmJson, kSpmConfig);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

TEST(TokenizerTest, BpeAppliesLowestRankedMergeFirst) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  // "abc" is the word "▁abc": ▁,a,b,c -(b c, rank 0)-> ▁,a,bc -(a bc, rank 2; beats ▁ a,
  // rank 3)-> ▁,abc. In "▁abc▁ab" the second a+b (rank 1) merges before a+bc.
  EXPECT_THAT(*t->Encode("abc", false), ElementsAre(9, 8));
  EXPECT_THAT(*t->Encode("abc ab", false), ElementsAre(9, 8, 9, 6));
  EXPECT_THAT(*t->Encode("a", false), ElementsAre(10));
  // With the BOS template.
  EXPECT_THAT(*t->Encode("abc", true), ElementsAre(1, 9, 8));
}

TEST(TokenizerTest, ByteFallbackAndUnknown) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  // é = C3 A9 has byte tokens; x has none and no byte tokens for 0x78 -> <unk>; unk fused.
  EXPECT_THAT(*t->Encode("\xC3\xA9", false), ElementsAre(9, 11, 12));
  EXPECT_THAT(*t->Encode("xx", false), ElementsAre(9, 0));
  EXPECT_EQ(*t->Decode(Ids{9, 11, 12}), "\xC3\xA9");
  // A lone lead byte decodes to U+FFFD.
  EXPECT_EQ(*t->Decode(Ids{3, 11, 3}),
            "a\xEF\xBF\xBD"
            "a");
}

TEST(TokenizerTest, AddedTokensSplitInputAndStripSpaces) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  // <M> has lstrip/rstrip: the spaces around it are part of its match. Metaspace "first"
  // prepends only to the piece at the start of the input.
  EXPECT_THAT(*t->Encode("a  <M>  a", false), ElementsAre(10, 13, 3));
  EXPECT_THAT(*t->Encode("</s>a", false), ElementsAre(2, 3));
  EXPECT_THAT(*t->Encode("a</s>", true), ElementsAre(1, 10, 2));
}

TEST(TokenizerTest, DecodeSkipsSpecialTokensOnRequest) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(*t->Decode(Ids{1, 10, 7, 2}), "<s> abc</s>");
  EXPECT_EQ(*t->Decode(Ids{1, 10, 7, 2}, true), "abc");
}

TEST(TokenizerTest, VocabularyAccessors) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 14);
  EXPECT_EQ(t->TokenToId("abc"), 8);
  EXPECT_EQ(t->TokenToId("<M>"), 13);
  EXPECT_EQ(t->TokenToId("zzz"), std::nullopt);
  EXPECT_EQ(t->IdToToken(7), "bc");
  EXPECT_EQ(t->IdToToken(99), "");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->IsSpecial(2));
  EXPECT_FALSE(t->IsSpecial(3));
  EXPECT_TRUE(t->IsByteFallbackToken(11));
  EXPECT_FALSE(t->IsByteFallbackToken(3));
}

TEST(TokenizerTest, RejectsInvalidUtf8AndUnknownIds) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  auto enc = t->Encode("ab\xFF");
  EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument);
  auto dec = t->Decode(Ids{3, 4242});
  EXPECT_EQ(dec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dec.status().message()), HasSubstr("4242"));
  EXPECT_EQ(t->Decode(Ids{-1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, MalformedFilesGiveInvalidArgumentNamingTheField) {
  struct Case {
    std::string json;
    std::string needle;
  };
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})";
  const std::vector<Case> cases = {
      {"{not json", "tokenizer.json"},
      {"[]", "tokenizer.json"},
      {"{}", "model"},
      {R"({"model": {"type": "Unigram", "vocab": []}})", "model.type"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 4000000000}}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 2147483647}}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})", "model.merges[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})", "model.merges[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "unk_token": "<unk>"}})", "unk_token"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "dropout": 0.1}})", "dropout"},
      {R"({"normalizer": {"type": "NFKC"}, )" + model + "}", "normalizer.type"},
      {R"({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Lowercase"}]}, )" + model +
           "}",
       "normalizer.normalizers[0].type"},
      {R"j({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<=x)"}}, )j" + model + "}",
       "pre_tokenizer.pattern.Regex"},
      {R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}, )" + model + "}",
       "pre_tokenizer.replacement"},
      {R"({"decoder": {"type": "WordPiece"}, )" + model + "}", "decoder.type"},
      {R"({"added_tokens": [{"id": -3, "content": "x"}], )" + model + "}", "added_tokens[0].id"},
      {R"({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}}, )" +
           model + "}",
       "special_tokens"},
  };
  for (const Case& c : cases) {
    auto t = Tokenizer::FromJson(c.json, "");
    ASSERT_FALSE(t.ok()) << c.json;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.needle)) << c.json;
  }
  auto bad_config = Tokenizer::FromJson(R"({)" + model + "}", "{oops");
  ASSERT_FALSE(bad_config.ok());
  EXPECT_THAT(std::string(bad_config.status().message()), HasSubstr("tokenizer_config.json"));
}

// transformers 5 (AutoTokenizer / PreTrainedTokenizerFast / LlamaTokenizer alike) ignores
// add_bos_token when a tokenizer.json exists: only the post-processor adds BOS. Checked with
// transformers 5.23 on this very file: "a a" -> [6, 6] with the config below, [1, 6, 6] once the
// TemplateProcessing "<s> $A" is present.
TEST(TokenizerTest, BosComesFromThePostProcessorNotTheConfigFlag) {
  const std::string body = R"("added_tokens": [
      {"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
      {"id": 2, "content": "</s>", "special": true}],
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                      "split": false},
    "model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2,
              "a": 3, "b": 4, "\u2581": 5, "\u2581a": 6}, "merges": [["\u2581", "a"]]})";
  const std::string config = R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})";
  auto without = Tokenizer::FromJson("{\"post_processor\": null, " + body + "}", config);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_THAT(*(*without)->Encode("a a"), ElementsAre(6, 6));
  EXPECT_EQ((*without)->bos_id(), 1);
  auto with = Tokenizer::FromJson(
      R"({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}},
          {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}}}, )" +
          body + "}",
      R"({"add_bos_token": false})");
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_THAT(*(*with)->Encode("a a"), ElementsAre(1, 6, 6));
  EXPECT_THAT(*(*with)->Encode("a a", false), ElementsAre(6, 6));
  EXPECT_EQ((*with)->bos_id(), 1);  // from the template when the config names none
}

TEST(TokenizerTest, LoadReportsMissingDirectory) {
  auto t = Tokenizer::Load("/nonexistent/tokenizer/dir");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("tokenizer.json"));
}

TEST(TokenizerTest, ConfigSpecialTokensFromFixtures) {
  auto jamba = Tokenizer::Load(testing_util::TokenizerFixtureDir("jamba_spm_bpe"));
  ASSERT_TRUE(jamba.ok()) << jamba.status();
  EXPECT_EQ((*jamba)->bos_id(), 1);  // <|startoftext|>
  EXPECT_EQ((*jamba)->eos_id(), 2);  // <|endoftext|>
  EXPECT_EQ((*jamba)->TokenToId("<|pad|>"), 0);
  EXPECT_EQ((*jamba)->TokenToId("<|unk|>"), 3);
  auto neox = Tokenizer::Load(testing_util::TokenizerFixtureDir("gpt_neox_bpe"));
  ASSERT_TRUE(neox.ok()) << neox.status();
  EXPECT_EQ((*neox)->eos_id(), 0);
  EXPECT_EQ((*neox)->TokenToId("<|padding|>"), 1);
  // GPT-NeoX adds no BOS even with add_special_tokens.
  EXPECT_EQ(*(*neox)->Encode("hi", true), *(*neox)->Encode("hi", false));
}

TEST(StreamingDetokenizerTest, HoldsBackIncompleteCharacters) {
  auto t = MakeSpm();
  ASSERT_NE(t, nullptr);
  StreamingDetokenizer stream(t.get());
  EXPECT_EQ(*stream.Push(10), "a");  // ▁a at the start: space stripped
  EXPECT_EQ(*stream.Push(11), "");   // first byte of é
  EXPECT_EQ(*stream.Push(12), "");   // byte run may still continue
  EXPECT_EQ(*stream.Push(9), "\xC3\xA9 ");
  EXPECT_EQ(*stream.Push(3), "a");
  EXPECT_EQ(*stream.Flush(), "");
  EXPECT_EQ(stream.Push(777).status().code(), absl::StatusCode::kInvalidArgument);
}

// 100K-token prompts must encode well under a second (Release build, cold word cache).
TEST(TokenizerPerformanceTest, EncodesLongPromptsQuickly) {
  const nlohmann::json corpus =
      testing_util::ReadJsonFile(testing_util::TokenizerFixtureDir("corpus.json"));
  ASSERT_TRUE(corpus.is_array());
  std::string text;
  for (int rep = 0; text.size() < 600000; ++rep) {
    for (const auto& s : corpus) text += s.get<std::string>() + (rep % 2 ? "\n" : " ");
  }
  for (const char* name : {"gpt_neox_bpe", "real_mistral", "llama3_regex_bpe"}) {
    auto t = Tokenizer::Load(testing_util::TokenizerFixtureDir(name));
    ASSERT_TRUE(t.ok()) << t.status();
    const auto start = std::chrono::steady_clock::now();
    auto ids = (*t)->Encode(text);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(ids.ok());
    const double per_100k = seconds * 100000.0 / static_cast<double>(ids->size());
    std::printf("%s: %zu bytes -> %zu tokens in %.3f s (%.3f s per 100K tokens)\n", name,
                text.size(), ids->size(), seconds, per_100k);
    EXPECT_GT(ids->size(), 100000u);
#ifdef NDEBUG
    EXPECT_LT(per_100k, 1.0) << name;
#endif
  }
}

// Inputs that are slow for naive BPE (one huge word) or backtracking regexes (long whitespace
// runs before a non-space) stay fast.
TEST(TokenizerPerformanceTest, AdversarialInputsStayFast) {
  std::string cjk;
  for (int i = 0; i < 50000; ++i) cjk += "\xE4\xB8\xAD\xE6\x96\x87";  // 中文
  const std::vector<std::string> inputs = {std::string(200000, 'a'),
                                           std::string(200000, ' ') + "x",
                                           std::string(100000, '1'),
                                           std::string(100000, '\n') + "x",
                                           cjk,
                                           std::string(100000, ' ') + "\n"};
  for (const char* name :
       {"gpt_neox_bpe", "real_mistral", "llama3_regex_bpe", "falcon_style_bpe"}) {
    auto t = Tokenizer::Load(testing_util::TokenizerFixtureDir(name));
    ASSERT_TRUE(t.ok()) << t.status();
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      auto ids = (*t)->Encode(inputs[i]);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ASSERT_TRUE(ids.ok());
      EXPECT_FALSE(ids->empty());
#ifdef NDEBUG
      EXPECT_LT(seconds, 1.0) << name << " input " << i;
#endif
      if (seconds > 0.2) std::printf("%s input %zu: %.3f s\n", name, i, seconds);
    }
  }
}

}  // namespace
}  // namespace jamba
