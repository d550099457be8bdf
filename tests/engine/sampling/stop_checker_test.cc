#include "engine/sampling/stop_checker.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace jamba {
namespace {

SamplingParams WithStops(std::vector<std::string> stop_strings, int32_t max_new_tokens = 100) {
  SamplingParams p;
  p.stop_strings = std::move(stop_strings);
  p.max_new_tokens = max_new_tokens;
  return p;
}

// Feeds deltas as tokens 100, 101, ... and returns what a streaming client would have seen.
struct Streamed {
  std::vector<std::string> deltas;
  std::string text;
  FinishReason finish = FinishReason::kNone;
};
Streamed Feed(StopChecker& checker, const std::vector<std::string>& deltas) {
  Streamed out;
  int32_t token = 100;
  for (const std::string& d : deltas) {
    if (checker.finished()) break;
    StopUpdate u = checker.Append(token++, d);
    out.deltas.push_back(u.text);
    out.text += u.text;
    out.finish = u.finish_reason;
  }
  return out;
}

TEST(FinishReasonTest, Names) {
  EXPECT_STREQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kNone), "");
}

TEST(StopCheckerTest, PlainTextStreamsThrough) {
  StopChecker checker(WithStops({}), {});
  const Streamed s = Feed(checker, {"Hello", ", ", "world"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"Hello", ", ", "world"}));
  EXPECT_EQ(s.finish, FinishReason::kNone);
  EXPECT_FALSE(checker.finished());
  EXPECT_EQ(checker.text(), "Hello, world");
  EXPECT_EQ(checker.num_tokens(), 3);
}

TEST(StopCheckerTest, StopTokenIds) {
  SamplingParams p;
  p.stop_token_ids = {2, 518};
  StopChecker checker(p, {});
  EXPECT_EQ(checker.Append(10, "a").finish_reason, FinishReason::kNone);
  const StopUpdate u = checker.Append(518, "<|eom|>");
  EXPECT_EQ(u.finish_reason, FinishReason::kStop);
  EXPECT_EQ(u.text, "");  // the stop token's text is not output
  EXPECT_EQ(checker.text(), "a");
  EXPECT_EQ(checker.stop_token(), absl::optional<int32_t>(518));
  EXPECT_FALSE(checker.stop_string().has_value());
}

TEST(StopCheckerTest, EosStopsUnlessIgnored) {
  SamplingParams p;
  StopChecker checker(p, {2});
  EXPECT_EQ(checker.Append(2, "</s>").finish_reason, FinishReason::kStop);
  EXPECT_EQ(checker.text(), "");

  p.ignore_eos = true;
  p.stop_token_ids = {7};
  StopChecker ignoring(p, {2});
  EXPECT_EQ(ignoring.Append(2, "</s>").finish_reason, FinishReason::kNone);
  EXPECT_EQ(ignoring.text(), "</s>");
  // stop_token_ids still stop with ignore_eos.
  EXPECT_EQ(ignoring.Append(7, "x").finish_reason, FinishReason::kStop);
}

TEST(StopCheckerTest, StopStringSplitAcrossDeltasNeverLeaks) {
  StopChecker checker(WithStops({"END"}), {});
  const Streamed s = Feed(checker, {"Hello ", "E", "N", "D", "more"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"Hello ", "", "", ""}));
  EXPECT_EQ(s.finish, FinishReason::kStop);
  EXPECT_EQ(checker.text(), "Hello ");
  EXPECT_EQ(checker.stop_string(), absl::optional<std::string>("END"));
  EXPECT_EQ(checker.num_tokens(), 4);
}

TEST(StopCheckerTest, HeldBackTextIsReleasedWhenDisambiguated) {
  StopChecker checker(WithStops({"END"}), {});
  const Streamed s = Feed(checker, {"E", "N", "X", "E"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"", "", "ENX", ""}));
  EXPECT_EQ(checker.text(), "ENX");
  EXPECT_FALSE(checker.finished());
}

TEST(StopCheckerTest, StopStringInsideOneDelta) {
  StopChecker checker(WithStops({"END"}), {});
  const StopUpdate u = checker.Append(1, "abcENDxyz");
  EXPECT_EQ(u.text, "abc");
  EXPECT_EQ(u.finish_reason, FinishReason::kStop);
  EXPECT_EQ(checker.text(), "abc");
}

TEST(StopCheckerTest, StopStringStraddlingHeldTextAndDelta) {
  StopChecker checker(WithStops({"</answer>"}), {});
  const Streamed s = Feed(checker, {"42 </", "ans", "wer> trailing"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"42 ", "", ""}));
  EXPECT_EQ(s.finish, FinishReason::kStop);
  EXPECT_EQ(checker.text(), "42 ");
}

TEST(StopCheckerTest, SelfOverlappingStopString) {
  // Stop "aab" over "a","a","a","b": after "aaa" only the suffix "aa" can still start it.
  StopChecker checker(WithStops({"aab"}), {});
  const Streamed s = Feed(checker, {"a", "a", "a", "b"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"", "", "a", ""}));
  EXPECT_EQ(s.finish, FinishReason::kStop);
  EXPECT_EQ(checker.text(), "a");
}

TEST(StopCheckerTest, EarliestOfSeveralStopStringsWins) {
  StopChecker checker(WithStops({"world", "lo"}), {});
  const StopUpdate u = checker.Append(1, "hello world");
  EXPECT_EQ(u.text, "hel");
  EXPECT_EQ(checker.stop_string(), absl::optional<std::string>("lo"));
}

TEST(StopCheckerTest, HoldsTheLongestPossiblePrefixOfAnyStopString) {
  StopChecker checker(WithStops({"xyz", "bxy"}), {});
  // "abx": "bx" may start "bxy", "x" may start "xyz": hold "bx".
  EXPECT_EQ(checker.Append(1, "abx").text, "a");
  EXPECT_EQ(checker.Append(2, "yq").text, "");  // "bxy" completed
  EXPECT_EQ(checker.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(checker.text(), "a");
}

TEST(StopCheckerTest, MaxNewTokensGivesLengthAndReleasesHeldText) {
  StopChecker checker(WithStops({"END"}, 3), {});
  const Streamed s = Feed(checker, {"a", "b", "E"});
  EXPECT_EQ(s.deltas, (std::vector<std::string>{"a", "b", "E"}));
  EXPECT_EQ(s.finish, FinishReason::kLength);
  EXPECT_EQ(checker.text(), "abE");
  EXPECT_EQ(checker.num_tokens(), 3);
}

TEST(StopCheckerTest, StopOnTheLastAllowedTokenIsStop) {
  SamplingParams p;
  p.max_new_tokens = 2;
  p.stop_token_ids = {5};
  StopChecker checker(p, {});
  checker.Append(1, "x");
  EXPECT_EQ(checker.Append(5, "").finish_reason, FinishReason::kStop);

  StopChecker strings(WithStops({"END"}, 2), {});
  strings.Append(1, "x");
  EXPECT_EQ(strings.Append(2, "END").finish_reason, FinishReason::kStop);
  EXPECT_EQ(strings.text(), "x");
}

TEST(StopCheckerTest, StopTokenReleasesHeldText) {
  SamplingParams p = WithStops({"END"});
  StopChecker checker(p, {2});
  EXPECT_EQ(checker.Append(1, "hi E").text, "hi ");
  const StopUpdate u = checker.Append(2, "</s>");
  EXPECT_EQ(u.text, "E");
  EXPECT_EQ(checker.text(), "hi E");
}

TEST(StopCheckerTest, Utf8IsHeldAtCharacterBoundaries) {
  // Stop string "éx" (C3 A9 78): a trailing "é" is held back whole.
  StopChecker checker(WithStops({"\xC3\xA9x"}), {});
  EXPECT_EQ(checker.Append(1, "caf\xC3\xA9").text, "caf");
  EXPECT_EQ(checker.Append(2, "!").text, "\xC3\xA9!");
}

TEST(StopCheckerTest, MaxNewTokensOne) {
  StopChecker checker(WithStops({}, 1), {});
  const StopUpdate u = checker.Append(3, "z");
  EXPECT_EQ(u.finish_reason, FinishReason::kLength);
  EXPECT_EQ(u.text, "z");
  EXPECT_TRUE(checker.finished());
}

}  // namespace
}  // namespace jamba
