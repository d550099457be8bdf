// Normalizers of the tokenizer.json "normalizer" section. Input and output are valid UTF-8.
//
// Supported types: Sequence, NFC, NFD, Prepend, Replace (String or Regex pattern), Strip.
// Others (NFKC, NFKD, Lowercase, Precompiled, BertNormalizer, ...) are rejected when loading.
#ifndef JAMBA_ENGINE_TOKENIZER_NORMALIZER_H_
#define JAMBA_ENGINE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jamba {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Normalize(std::string text) const = 0;
};

// Builds the normalizer described by `config` (a tokenizer.json "normalizer" value found at
// `path`); a JSON null yields nullptr (no normalization).
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config,
                                                               absl::string_view path);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_NORMALIZER_H_
