#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

// Length of the valid UTF-8 sequence at s[pos], or 0 if the bytes there are not one. When 0,
// `*subpart` receives the length of the maximal subpart of an ill-formed sequence (>= 1), which
// is what a lossy decoder replaces with one U+FFFD.
size_t SequenceAt(absl::string_view s, size_t pos, size_t* subpart) {
  const auto byte = [&](size_t i) -> unsigned { return static_cast<unsigned char>(s[i]); };
  const unsigned b0 = byte(pos);
  *subpart = 1;
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < need; ++i) {
    if (pos + i >= s.size()) {
      *subpart = i;
      return 0;
    }
    const unsigned b = byte(pos + i);
    const unsigned l = i == 1 ? lo : 0x80;
    const unsigned h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *subpart = i;
      return 0;
    }
  }
  return need;
}

}  // namespace

size_t ValidUtf8PrefixLength(absl::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t subpart;
    const size_t n = SequenceAt(s, pos, &subpart);
    if (n == 0) return pos;
    pos += n;
  }
  return pos;
}

int Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC0 && lead < 0xE0) return 2;
  if (lead >= 0xE0 && lead < 0xF0) return 3;
  if (lead >= 0xF0 && lead < 0xF8) return 4;
  return 1;
}

char32_t DecodeUtf8(absl::string_view s, size_t* pos) {
  const unsigned char b0 = static_cast<unsigned char>(s[*pos]);
  const int n = Utf8SequenceLength(b0);
  char32_t cp = n == 1 ? b0 : (b0 & (0x7F >> n));
  for (int i = 1; i < n && *pos + i < s.size(); ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[*pos + i]) & 0x3F);
  }
  *pos += n;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string Utf8ToCodePoints(absl::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(DecodeUtf8(s, &pos));
  return out;
}

std::string CodePointsToUtf8(const std::u32string& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) AppendUtf8(cp, &out);
  return out;
}

std::string Utf8Lossy(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t subpart;
    const size_t n = SequenceAt(bytes, pos, &subpart);
    if (n > 0) {
      out.append(bytes.data() + pos, n);
      pos += n;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += subpart;
    }
  }
  return out;
}

}  // namespace jamba
