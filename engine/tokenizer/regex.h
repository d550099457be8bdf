// A small backtracking regular-expression engine over Unicode code points, covering the syntax
// that real tokenizer.json "Split"/"Replace" patterns use (GPT-2, GPT-4/Llama-3, Falcon, ...)
// with Oniguruma's leftmost-first semantics, which is what the reference `tokenizers` library
// runs them on.
//
// Supported: literals and escapes (\r \n \t \f \v \e \0 \xHH \x{H..} \uHHHH, escaped
// punctuation), `.` (anything but \n), classes [...] with ranges and negation, \s \S \d \D \w \W,
// \p{X} \P{X} \p{^X} for general categories and their one-letter groups (L, Lu, N, Nd, P, ...),
// groups (...) (?:...), case-insensitive groups (?i:...) and (?i) (ASCII plus U+017F/U+212A
// simple folding), lookahead (?=...) (?!...), alternation, and the greedy or lazy quantifiers
// ? * + {n} {n,} {n,m}. Anything else (anchors, backreferences, lookbehind, possessive
// quantifiers, scripts, nested class set operations, unbounded repetition of something that can
// match the empty string) is rejected at Compile time with InvalidArgument.
#ifndef JAMBA_ENGINE_TOKENIZER_REGEX_H_
#define JAMBA_ENGINE_TOKENIZER_REGEX_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jamba {

class Regex {
 public:
  // `pattern` is UTF-8.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view pattern);

  // Finds the leftmost match at or after text[start]; on success sets [*begin, *end) (indices
  // into `text`, possibly an empty range) and returns true.
  bool Find(const std::u32string& text, size_t start, size_t* begin, size_t* end) const;

  // All non-overlapping matches from the start, like Oniguruma's find_iter: after an empty match
  // the search resumes one code point further.
  std::vector<std::pair<size_t, size_t>> FindAll(const std::u32string& text) const;

  struct ClassItem {
    enum class Kind : uint8_t { kRange, kCategories, kWhitespace };
    Kind kind;
    bool negated;
    char32_t lo, hi;         // kRange
    uint32_t category_mask;  // kCategories: bit i = GeneralCategory i
  };
  struct CharClass {
    bool negated = false;
    std::vector<ClassItem> items;
    uint64_t ascii[2] = {0, 0};  // precomputed answer for code points < 128
    bool Matches(char32_t cp) const;
    bool MatchesSlow(char32_t cp) const;
  };
  enum class Op : uint8_t { kClass, kSplit, kJmp, kMatch, kLookahead };
  struct Inst {
    Op op;
    bool negative = false;  // kLookahead: (?!...)
    uint32_t x = 0;  // kClass: class index; kSplit: preferred target; kJmp/kLookahead: target
    uint32_t y = 0;  // kSplit: alternative target; kLookahead: sub-program start
  };

 private:
  Regex() = default;
  // Runs the program from `pc` at text[pos]; returns the end of the first (leftmost-first)
  // match or npos.
  size_t Run(const std::u32string& text, size_t pos, uint32_t pc,
             std::vector<std::pair<uint32_t, size_t>>* backtrack) const;

  std::vector<CharClass> classes_;
  std::vector<Inst> program_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_REGEX_H_
