// The regex engine against hand-worked splits of the patterns real tokenizers use.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

std::vector<std::string> Matches(const std::string& pattern, const std::string& text) {
  auto re = Regex::Compile(pattern);
  EXPECT_TRUE(re.ok()) << re.status();
  if (!re.ok()) return {};
  const std::u32string cps = Utf8ToCodePoints(text);
  std::vector<std::string> out;
  for (const auto& [b, e] : (*re)->FindAll(cps))
    out.push_back(CodePointsToUtf8(cps.substr(b, e - b)));
  return out;
}

using Strings = std::vector<std::string>;

TEST(RegexTest, Gpt2Pattern) {
  EXPECT_EQ(Matches(kGpt2SplitPattern, "Hello world's  123 ok!!\n\n  x"),
            (Strings{"Hello", " world", "'s", " ", " 123", " ok", "!!", "\n\n ", " x"}));
  // \s+(?!\S) leaves the last space to prefix the next word.
  EXPECT_EQ(Matches(kGpt2SplitPattern, "a   b"), (Strings{"a", "  ", " b"}));
  EXPECT_EQ(Matches(kGpt2SplitPattern, "trailing   "), (Strings{"trailing", "   "}));
  EXPECT_EQ(Matches(kGpt2SplitPattern, "ж中😀"), (Strings{"ж中", "😀"}));
}

TEST(RegexTest, Llama3Pattern) {
  const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  EXPECT_EQ(Matches(pattern, "I'M 1234567 (x)\n\nend"),
            (Strings{"I", "'M", " ", "123", "456", "7", " (", "x", ")\n\n", "end"}));
}

TEST(RegexTest, QuantifiersAlternationAndClasses) {
  EXPECT_EQ(Matches("[0-9][0-9][0-9]", "12345678"), (Strings{"123", "456"}));
  EXPECT_EQ(Matches("a+?", "aaa"), (Strings{"a", "a", "a"}));
  EXPECT_EQ(Matches("ab|a", "aab"), (Strings{"a", "ab"}));  // leftmost-first, not longest
  EXPECT_EQ(Matches(R"(\p{Lu}\p{Ll}*)", "HelloWorld"), (Strings{"Hello", "World"}));
  EXPECT_EQ(Matches(R"([^\s]+)", " a\tbc "), (Strings{"a", "bc"}));
  EXPECT_EQ(Matches(R"(x(?=y))", "xyxz"), (Strings{"x"}));
  EXPECT_EQ(Matches(R"(\x{4E2D}|\.)", "中.a"), (Strings{"中", "."}));
  EXPECT_EQ(Matches("a{2,}", "a aa aaa"), (Strings{"aa", "aaa"}));
}

TEST(RegexTest, RejectsUnsupportedSyntax) {
  for (const char* bad :
       {"(?<=a)b", "a++", "^a", "(a)\\1", "\\p{Han}", "[a[b]]", "(a*)*", "(", "a)", "[z-a]"}) {
    auto re = Regex::Compile(bad);
    EXPECT_FALSE(re.ok()) << bad;
    if (!re.ok()) {
      EXPECT_EQ(re.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
}

}  // namespace
}  // namespace jamba
