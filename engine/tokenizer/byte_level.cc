#include "engine/tokenizer/byte_level.h"

#include <array>

#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

struct Tables {
  std::array<char32_t, 256> to_char;
  std::array<int, 324> to_byte;  // indexed by code point; all mapped characters are < 324
  Tables() {
    to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      to_byte[to_char[b]] = b;
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

char32_t ByteToChar(unsigned char b) { return GetTables().to_char[b]; }

int CharToByte(char32_t cp) { return cp < 324 ? GetTables().to_byte[cp] : -1; }

std::string BytesToByteLevel(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  const Tables& t = GetTables();
  for (unsigned char b : bytes) AppendUtf8(t.to_char[b], &out);
  return out;
}

}  // namespace jamba
