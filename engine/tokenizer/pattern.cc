#include "engine/tokenizer/pattern.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {

absl::StatusOr<Pattern> Pattern::FromJson(const nlohmann::json& config, absl::string_view path) {
  using json_fields::FieldError;
  if (!config.is_object()) return FieldError(path, "must be an object {\"String\"|\"Regex\": ...}");
  Pattern p;
  if (const nlohmann::json* s = json_fields::Find(config, "String")) {
    if (!s->is_string()) return FieldError(absl::StrCat(path, ".String"), "must be a string");
    const std::string text = s->get<std::string>();
    if (!IsValidUtf8(text)) return FieldError(absl::StrCat(path, ".String"), "is not UTF-8");
    p.literal_ = Utf8ToCodePoints(text);
    return p;
  }
  if (const nlohmann::json* r = json_fields::Find(config, "Regex")) {
    if (!r->is_string()) return FieldError(absl::StrCat(path, ".Regex"), "must be a string");
    auto re = Regex::Compile(r->get<std::string>());
    if (!re.ok()) return FieldError(absl::StrCat(path, ".Regex"), re.status().message());
    p.regex_ = std::shared_ptr<const Regex>(std::move(re).value());
    return p;
  }
  return FieldError(path, "needs a \"String\" or \"Regex\" member");
}

Pattern Pattern::Literal(std::string literal) {
  Pattern p;
  p.literal_ = Utf8ToCodePoints(literal);
  return p;
}

std::vector<std::pair<size_t, size_t>> Pattern::FindAll(const std::u32string& text) const {
  if (regex_ != nullptr) return regex_->FindAll(text);
  std::vector<std::pair<size_t, size_t>> out;
  if (literal_.empty()) return out;
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::u32string::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
  return out;
}

std::string Pattern::ReplaceAll(const std::string& text, const std::string& content) const {
  const std::u32string cps = Utf8ToCodePoints(text);
  const auto matches = FindAll(cps);
  if (matches.empty()) return text;
  std::u32string out;
  const std::u32string replacement = Utf8ToCodePoints(content);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    out.append(cps, prev, b - prev);
    out += replacement;
    prev = e;
  }
  out.append(cps, prev, std::u32string::npos);
  return CodePointsToUtf8(out);
}

}  // namespace jamba
