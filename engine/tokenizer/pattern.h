// The "pattern" field shared by the Split pre-tokenizer and the Replace normalizer/decoder:
// {"String": "..."} (a literal) or {"Regex": "..."}.
#ifndef JAMBA_ENGINE_TOKENIZER_PATTERN_H_
#define JAMBA_ENGINE_TOKENIZER_PATTERN_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace jamba {

class Pattern {
 public:
  static absl::StatusOr<Pattern> FromJson(const nlohmann::json& config, absl::string_view path);
  static Pattern Literal(std::string literal);

  // Non-overlapping matches in `text`, left to right, as [begin, end) indices into `text`.
  std::vector<std::pair<size_t, size_t>> FindAll(const std::u32string& text) const;

  // Replaces every match in UTF-8 `text` with `content`.
  std::string ReplaceAll(const std::string& text, const std::string& content) const;

 private:
  std::u32string literal_;  // used when regex_ is null
  std::shared_ptr<const Regex> regex_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_PATTERN_H_
