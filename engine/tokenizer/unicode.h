// Unicode properties and normalization used by the tokenizer (tables: unicode_tables.cc).
#ifndef JAMBA_ENGINE_TOKENIZER_UNICODE_H_
#define JAMBA_ENGINE_TOKENIZER_UNICODE_H_

#include <cstdint>
#include <string>

namespace jamba {

// Unicode general categories; the order matches tools/gen_unicode_tables.py.
enum class GeneralCategory : uint8_t {
  kCn,
  kLu,
  kLl,
  kLt,
  kLm,
  kLo,
  kMn,
  kMc,
  kMe,
  kNd,
  kNl,
  kNo,
  kPc,
  kPd,
  kPs,
  kPe,
  kPi,
  kPf,
  kPo,
  kSm,
  kSc,
  kSk,
  kSo,
  kZs,
  kZl,
  kZp,
  kCc,
  kCf,
  kCs,
  kCo,
};

GeneralCategory GetGeneralCategory(char32_t cp);

// The one-letter major class of a category: 'L', 'M', 'N', 'P', 'S', 'Z' or 'C'.
char MajorCategory(GeneralCategory cat);

inline bool IsLetter(char32_t cp) { return MajorCategory(GetGeneralCategory(cp)) == 'L'; }
inline bool IsNumber(char32_t cp) { return MajorCategory(GetGeneralCategory(cp)) == 'N'; }
inline bool IsPunctuation(char32_t cp) { return MajorCategory(GetGeneralCategory(cp)) == 'P'; }

// The Unicode White_Space property (= Rust char::is_whitespace = Oniguruma's \s).
bool IsWhitespace(char32_t cp);

// Rust's char::is_ascii_punctuation || is_punctuation, as used by the Punctuation pre-tokenizer.
bool IsPunctuationLikeTokenizers(char32_t cp);

uint8_t CanonicalCombiningClass(char32_t cp);

// Canonical normalization forms of valid UTF-8 text.
std::string NormalizeNfd(const std::string& s);
std::string NormalizeNfc(const std::string& s);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_UNICODE_H_
