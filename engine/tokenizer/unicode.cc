#include "engine/tokenizer/unicode.h"

#include <algorithm>

#include "engine/tokenizer/unicode_tables.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

constexpr char32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr int kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr int kHangulNCount = kHangulVCount * kHangulTCount;
constexpr int kHangulSCount = kHangulLCount * kHangulNCount;

template <typename Range>
const Range* FindRange(const Range* table, size_t n, char32_t cp) {
  const Range* end = table + n;
  const Range* it =
      std::upper_bound(table, end, cp, [](char32_t v, const Range& r) { return v < r.first; });
  if (it == table) return nullptr;
  --it;
  return cp <= it->last ? it : nullptr;
}

// Appends the full canonical decomposition of `cp`.
void Decompose(char32_t cp, std::u32string* out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    const int s = static_cast<int>(cp - kHangulSBase);
    out->push_back(kHangulLBase + s / kHangulNCount);
    out->push_back(kHangulVBase + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount != 0) out->push_back(kHangulTBase + s % kHangulTCount);
    return;
  }
  using unicode_data::Decomposition;
  const Decomposition* begin = unicode_data::kDecompositions;
  const Decomposition* end = begin + unicode_data::kNumDecompositions;
  const Decomposition* it = std::lower_bound(
      begin, end, cp, [](const Decomposition& d, char32_t v) { return d.code_point < v; });
  if (it != end && it->code_point == cp) {
    out->append(unicode_data::kDecompositionData + it->offset,
                unicode_data::kDecompositionData + it->offset + it->length);
  } else {
    out->push_back(cp);
  }
}

// Canonical ordering: stable sort of each run of non-starters by combining class.
void ReorderMarks(std::u32string* s) {
  size_t i = 0;
  while (i < s->size()) {
    if (CanonicalCombiningClass((*s)[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s->size() && CanonicalCombiningClass((*s)[j]) != 0) ++j;
    std::stable_sort(s->begin() + i, s->begin() + j, [](char32_t a, char32_t b) {
      return CanonicalCombiningClass(a) < CanonicalCombiningClass(b);
    });
    i = j;
  }
}

std::u32string DecomposeAll(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) Decompose(DecodeUtf8(s, &pos), &out);
  ReorderMarks(&out);
  return out;
}

// Returns the primary composite of (a, b), or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kHangulLBase && a < kHangulLBase + kHangulLCount && b >= kHangulVBase &&
      b < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((a - kHangulLBase) * kHangulVCount + (b - kHangulVBase)) * kHangulTCount;
  }
  if (a >= kHangulSBase && a < kHangulSBase + kHangulSCount &&
      (a - kHangulSBase) % kHangulTCount == 0 && b > kHangulTBase &&
      b < kHangulTBase + kHangulTCount) {
    return a + (b - kHangulTBase);
  }
  using unicode_data::CompositionPair;
  const CompositionPair* begin = unicode_data::kCompositionPairs;
  const CompositionPair* end = begin + unicode_data::kNumCompositionPairs;
  const CompositionPair* it =
      std::lower_bound(begin, end, std::make_pair(a, b), [](const CompositionPair& p, auto v) {
        return p.first != v.first ? p.first < v.first : p.second < v.second;
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

GeneralCategory GetGeneralCategory(char32_t cp) {
  const auto* r = FindRange(unicode_data::kCategoryRanges, unicode_data::kNumCategoryRanges, cp);
  return r == nullptr ? GeneralCategory::kCn : static_cast<GeneralCategory>(r->category);
}

char MajorCategory(GeneralCategory cat) {
  static constexpr char kMajor[] = "CLLLLLMMMNNNPPPPPPPSSSSZZZCCCC";
  return kMajor[static_cast<int>(cat)];
}

bool IsWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool IsPunctuationLikeTokenizers(char32_t cp) {
  if (cp < 0x80) {
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
           (cp >= 0x7B && cp <= 0x7E);
  }
  return IsPunctuation(cp);
}

uint8_t CanonicalCombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* r =
      FindRange(unicode_data::kCombiningClassRanges, unicode_data::kNumCombiningClassRanges, cp);
  return r == nullptr ? 0 : r->ccc;
}

std::string NormalizeNfd(const std::string& s) { return CodePointsToUtf8(DecomposeAll(s)); }

std::string NormalizeNfc(const std::string& s) {
  // Fast path: ASCII is always NFC.
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return s;
  }
  std::u32string d = DecomposeAll(s);
  // Canonical composition algorithm (UAX #15): combine each character with the last starter
  // unless it is blocked by an intervening character of equal or higher combining class.
  size_t starter = std::u32string::npos;  // output index of the last starter
  int last_ccc = 0;                       // combining class of the last output character
  size_t out = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    const char32_t c = d[i];
    const int ccc = CanonicalCombiningClass(c);
    if (starter != std::u32string::npos) {
      const bool blocked = out > starter + 1 && last_ccc >= ccc;
      if (!blocked) {
        const char32_t composite = Compose(d[starter], c);
        if (composite != 0) {
          d[starter] = composite;
          continue;
        }
      }
    }
    if (ccc == 0) starter = out;
    last_ccc = ccc;
    d[out++] = c;
  }
  d.resize(out);
  return CodePointsToUtf8(d);
}

}  // namespace jamba
