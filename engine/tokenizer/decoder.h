// Decoders of the tokenizer.json "decoder" section: turn the token strings of a sequence back
// into text. Each decoder maps the list of token strings to a new list (the `tokenizers`
// decode_chain); the final text is their concatenation.
//
// Supported types: Sequence, ByteLevel, Metaspace, Replace (String pattern), ByteFallback, Fuse,
// Strip. Others are rejected when loading.
#ifndef JAMBA_ENGINE_TOKENIZER_DECODER_H_
#define JAMBA_ENGINE_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jamba {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const = 0;
  // Whether this decoder (or a part of it) is ByteFallback, which decodes runs of <0xNN> tokens
  // together: a run can change meaning when extended, which streaming must know.
  virtual bool HasByteFallback() const { return false; }
};

// JSON null yields nullptr (tokens are joined with single spaces, as in `tokenizers`).
absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config,
                                                         absl::string_view path);

// Whether `token` has the <0xNN> form ByteFallback decodes as one byte; sets `*byte`.
bool ParseByteFallbackToken(absl::string_view token, unsigned char* byte);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_DECODER_H_
