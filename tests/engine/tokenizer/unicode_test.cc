// Unicode helpers: hand-checked values (Unicode Standard tables, Rust's from_utf8_lossy rules).
#include <string>

#include <gtest/gtest.h>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

TEST(Utf8Test, ValidatesWellFormedSequencesOnly) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));  // a é € 😀
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));                              // overlong NUL
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));                          // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));                      // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));                              // truncated
  EXPECT_EQ(ValidUtf8PrefixLength("ab\xFF"
                                  "c"),
            2u);
}

TEST(Utf8Test, LossyDecodingReplacesMaximalSubparts) {
  // One U+FFFD per maximal subpart of an ill-formed sequence (Unicode 3.9, U+FFFD policy).
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98"
                      "a"),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(Utf8Lossy("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xE2\x82\xAC\xE2"), "\xE2\x82\xAC\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("plain"), "plain");
}

TEST(UnicodeTest, GeneralCategories) {
  EXPECT_EQ(GetGeneralCategory('A'), GeneralCategory::kLu);
  EXPECT_EQ(GetGeneralCategory(U'ж'), GeneralCategory::kLl);
  EXPECT_EQ(GetGeneralCategory(U'中'), GeneralCategory::kLo);
  EXPECT_EQ(GetGeneralCategory('7'), GeneralCategory::kNd);
  EXPECT_EQ(GetGeneralCategory(U'½'), GeneralCategory::kNo);
  EXPECT_EQ(GetGeneralCategory(0x301), GeneralCategory::kMn);
  EXPECT_EQ(GetGeneralCategory(U'😀'), GeneralCategory::kSo);
  EXPECT_EQ(GetGeneralCategory(0x378), GeneralCategory::kCn);  // unassigned
  EXPECT_TRUE(IsWhitespace(0x3000));
  EXPECT_FALSE(IsWhitespace(0x200B));             // zero width space is Cf, not White_Space
  EXPECT_TRUE(IsPunctuationLikeTokenizers('$'));  // ASCII punctuation includes symbols
  EXPECT_FALSE(IsPunctuationLikeTokenizers(U'€'));
}

TEST(UnicodeTest, NormalizationForms) {
  EXPECT_EQ(NormalizeNfc("e\xCC\x81"), "\xC3\xA9");  // e + acute -> é
  EXPECT_EQ(NormalizeNfd("\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(NormalizeNfc("\xE2\x84\xAB"), "\xC3\x85");  // Angstrom sign -> Å
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // 한
  // q + dot below + dot above: marks reordered by combining class, nothing composes.
  EXPECT_EQ(NormalizeNfc("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");
  // s + dot below + dot above composes fully to U+1E69.
  EXPECT_EQ(NormalizeNfc("s\xCC\x87\xCC\xA3"), "\xE1\xB9\xA9");
}

TEST(ByteLevelTest, Gpt2ByteMap) {
  EXPECT_EQ(ByteToChar('A'), U'A');
  EXPECT_EQ(ByteToChar(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(ByteToChar('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(CharToByte(0x120), ' ');
  EXPECT_EQ(CharToByte(U'中'), -1);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(CharToByte(ByteToChar(b)), b);
}

}  // namespace
}  // namespace jamba
