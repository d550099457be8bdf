// UTF-8 helpers shared by the tokenizer pipeline. Code points are char32_t; strings are UTF-8
// std::string / absl::string_view.
#ifndef JAMBA_ENGINE_TOKENIZER_UTF8_H_
#define JAMBA_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace jamba {

// Returns the length of the well-formed UTF-8 prefix of `s` (Unicode 3.9 Table 3-7: no overlongs,
// no surrogates, nothing above U+10FFFF).
size_t ValidUtf8PrefixLength(absl::string_view s);
inline bool IsValidUtf8(absl::string_view s) { return ValidUtf8PrefixLength(s) == s.size(); }

// Decodes the code point starting at s[pos] of a string known to be valid UTF-8 and advances
// `pos` past it.
char32_t DecodeUtf8(absl::string_view s, size_t* pos);

// Appends the UTF-8 encoding of `cp` (any scalar value) to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// Decodes valid UTF-8 into code points.
std::u32string Utf8ToCodePoints(absl::string_view s);
std::string CodePointsToUtf8(const std::u32string& cps);

// Byte length of the UTF-8 sequence that starts with `lead` (1 for continuation/invalid bytes).
int Utf8SequenceLength(unsigned char lead);

// Decodes arbitrary bytes, replacing each maximal invalid subpart with U+FFFD exactly like Rust's
// String::from_utf8_lossy (the behaviour the reference `tokenizers` decoders have).
std::string Utf8Lossy(absl::string_view bytes);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_UTF8_H_
