#include "engine/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string Normalize(std::string text) const override {
    for (const auto& n : parts_) text = n->Normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class NfcNormalizer : public Normalizer {
 public:
  std::string Normalize(std::string text) const override { return NormalizeNfc(text); }
};

class NfdNormalizer : public Normalizer {
 public:
  std::string Normalize(std::string text) const override { return NormalizeNfd(text); }
};

// Prepends `prefix` to non-empty text.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Normalize(std::string text) const override {
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string Normalize(std::string text) const override {
    return pattern_.ReplaceAll(text, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Removes leading and/or trailing White_Space characters.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string Normalize(std::string text) const override {
    std::u32string cps = Utf8ToCodePoints(text);
    size_t b = 0, e = cps.size();
    if (left_) {
      while (b < e && IsWhitespace(cps[b])) ++b;
    }
    if (right_) {
      while (e > b && IsWhitespace(cps[e - 1])) --e;
    }
    return CodePointsToUtf8(cps.substr(b, e - b));
  }

 private:
  bool left_, right_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& config,
                                                               absl::string_view path) {
  using json_fields::FieldError;
  if (config.is_null()) return std::unique_ptr<Normalizer>();
  JAMBA_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(config, "type", path));
  if (type == "Sequence") {
    const nlohmann::json* list = json_fields::Find(config, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return FieldError(absl::StrCat(path, ".normalizers"), "must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      JAMBA_ASSIGN_OR_RETURN(
          auto part, NormalizerFromJson((*list)[i], absl::StrCat(path, ".normalizers[", i, "]")));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "NFC") return std::unique_ptr<Normalizer>(new NfcNormalizer());
  if (type == "NFD") return std::unique_ptr<Normalizer>(new NfdNormalizer());
  if (type == "Prepend") {
    JAMBA_ASSIGN_OR_RETURN(std::string prefix, json_fields::GetString(config, "prepend", path));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    const nlohmann::json* pattern = json_fields::Find(config, "pattern");
    if (pattern == nullptr) return FieldError(absl::StrCat(path, ".pattern"), "is missing");
    JAMBA_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, absl::StrCat(path, ".pattern")));
    JAMBA_ASSIGN_OR_RETURN(std::string content, json_fields::GetString(config, "content", path));
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(std::move(p), std::move(content)));
  }
  if (type == "Strip") {
    JAMBA_ASSIGN_OR_RETURN(bool left, json_fields::GetBoolOr(config, "strip_left", path, true));
    JAMBA_ASSIGN_OR_RETURN(bool right, json_fields::GetBoolOr(config, "strip_right", path, true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  return FieldError(absl::StrCat(path, ".type"),
                    absl::StrCat("has unsupported normalizer type '", type, "'"));
}

}  // namespace jamba
