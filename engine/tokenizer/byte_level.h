// GPT-2's reversible byte <-> printable-character mapping used by ByteLevel pre-tokenizers and
// decoders: bytes that are printable Latin-1 map to themselves, the other 68 bytes to U+0100...
#ifndef JAMBA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define JAMBA_ENGINE_TOKENIZER_BYTE_LEVEL_H_

#include <string>

#include "absl/strings/string_view.h"

namespace jamba {

// The character (code point) standing for byte `b`.
char32_t ByteToChar(unsigned char b);

// The byte that code point `cp` stands for, or -1 if it is not one of the 256 characters.
int CharToByte(char32_t cp);

// Maps every byte of `bytes` to its character; returns UTF-8.
std::string BytesToByteLevel(absl::string_view bytes);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
