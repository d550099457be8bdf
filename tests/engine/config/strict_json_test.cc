#include "engine/config/strict_json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::string& text, int max_depth = kMaxJsonDepth) {
  absl::StatusOr<nlohmann::json> j = ParseStrictJson(text, max_depth);
  EXPECT_FALSE(j.ok()) << text;
  if (j.ok()) return "";
  EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(j.status().message());
}

TEST(StrictJsonTest, ParsesOrdinaryJson) {
  absl::StatusOr<nlohmann::json> j =
      ParseStrictJson("  {\"a\": [1, {\"b\": null}], \"c\": {\"a\": 2}, \"d\": \"x\"}  \n");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["a"][0], 1);
  EXPECT_TRUE((*j)["a"][1]["b"].is_null());
  EXPECT_EQ((*j)["c"]["a"], 2);  // the same key in different objects is fine
  EXPECT_EQ((*j)["d"], "x");
  // Equal keys in sibling objects of a list are fine too.
  EXPECT_TRUE(ParseStrictJson(R"([{"k": 1}, {"k": 2}])").ok());
}

TEST(StrictJsonTest, RejectsDuplicateKeysWithTheirPath) {
  EXPECT_EQ(ErrorOf(R"({"a": 1, "a": 2})"), "duplicate key 'a'");
  EXPECT_EQ(ErrorOf(R"({"t": {"dtype": "F32", "dtype": "F16"}})"),
            "duplicate key 'dtype' (in 't')");
  EXPECT_EQ(ErrorOf(R"({"x": [0, {"k": 1, "k": 1}]})"), "duplicate key 'k' (in 'x' / [...])");
}

TEST(StrictJsonTest, LimitsNesting) {
  std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(ParseStrictJson(ok).ok());
  std::string deep = std::string(65, '[') + std::string(65, ']');
  EXPECT_EQ(ErrorOf(deep), "JSON nested deeper than 64 levels");
  EXPECT_EQ(ErrorOf(R"({"a": {"b": 1}})", 1), "JSON nested deeper than 1 levels");
  // Far deeper than any stack could recurse through: rejected early, no crash.
  std::string very_deep = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_EQ(ErrorOf(very_deep), "JSON nested deeper than 64 levels");
}

TEST(StrictJsonTest, ReportsSyntaxErrorsWithPosition) {
  EXPECT_THAT(ErrorOf("{\"a\": }"),
              HasSubstr("malformed JSON at byte 7: parse error at line 1, column 7: syntax error"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("malformed JSON at byte 1"));
  EXPECT_THAT(ErrorOf("{} {}"), HasSubstr("malformed JSON"));
  EXPECT_THAT(ErrorOf("[1e99999]"), HasSubstr("malformed JSON"));
  EXPECT_THAT(ErrorOf("\"\xc3\x28\""), HasSubstr("malformed JSON"));  // invalid UTF-8
  EXPECT_THAT(ErrorOf(std::string("{\"a\":\0}", 7)), HasSubstr("malformed JSON"));
}

TEST(StrictJsonTest, LongBadTokensAreShortenedInMessages) {
  // nlohmann quotes the whole offending token; a megabyte string must not become the message.
  std::string text = "{\"a\": \"" + std::string(1000000, 'x') + "\\q\"}";
  std::string message = ErrorOf(text);
  EXPECT_THAT(message, HasSubstr("malformed JSON at byte"));
  EXPECT_LT(message.size(), 500u);
}

TEST(StrictJsonTest, MessagesArePrintableAscii) {
  // The offending token is quoted from the input; raw bytes are escaped, not copied.
  std::string message = ErrorOf("{\"a\": \"x\xcb\x01\"}");
  EXPECT_THAT(message, HasSubstr("\\xcb"));
  for (char c : message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << message;
}

TEST(StrictJsonTest, QuoteForErrorShortens) {
  EXPECT_EQ(QuoteForError("abc"), "'abc'");
  EXPECT_EQ(QuoteForError(std::string(5, 'x'), 3), "'xxx...' (5 bytes)");
  // Never cuts a UTF-8 sequence: "aé" is 61 c3 a9; a cut after 2 bytes keeps only "a".
  EXPECT_EQ(QuoteForError("a\xc3\xa9z", 2), "'a...' (4 bytes)");
}

}  // namespace
}  // namespace jamba
