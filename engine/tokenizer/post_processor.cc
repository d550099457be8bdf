#include "engine/tokenizer/post_processor.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_fields.h"

namespace jamba {
namespace {

using json_fields::FieldError;

// Ids of a ["token", id] pair (Roberta/Bert processors).
absl::StatusOr<int32_t> PairId(const nlohmann::json& config, const std::string& key,
                               absl::string_view path) {
  const nlohmann::json* v = json_fields::Find(config, key);
  const std::string p = absl::StrCat(path, ".", key);
  if (v == nullptr || !v->is_array() || v->size() != 2) {
    return FieldError(p, "must be [token, id]");
  }
  return json_fields::AsTokenId((*v)[1], absl::StrCat(p, "[1]"));
}

absl::StatusOr<SingleTemplate> FromTemplate(const nlohmann::json& config, absl::string_view path) {
  const nlohmann::json* single = json_fields::Find(config, "single");
  const std::string single_path = absl::StrCat(path, ".single");
  if (single == nullptr || !single->is_array()) return FieldError(single_path, "must be an array");
  const nlohmann::json* specials = json_fields::Find(config, "special_tokens");
  SingleTemplate out;
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const nlohmann::json& piece = (*single)[i];
    const std::string piece_path = absl::StrCat(single_path, "[", i, "]");
    if (json_fields::Find(piece, "Sequence") != nullptr) {
      if (seen_sequence) return FieldError(piece_path, "repeats the sequence");
      seen_sequence = true;
      continue;
    }
    const nlohmann::json* special = json_fields::Find(piece, "SpecialToken");
    if (special == nullptr) return FieldError(piece_path, "must be a Sequence or SpecialToken");
    JAMBA_ASSIGN_OR_RETURN(
        std::string name,
        json_fields::GetString(*special, "id", absl::StrCat(piece_path, ".SpecialToken")));
    const nlohmann::json* entry =
        specials == nullptr ? nullptr : json_fields::Find(*specials, name);
    const std::string entry_path = absl::StrCat(path, ".special_tokens[\"", name, "\"]");
    if (entry == nullptr) return FieldError(entry_path, "is missing");
    const nlohmann::json* ids = json_fields::Find(*entry, "ids");
    if (ids == nullptr || !ids->is_array()) {
      return FieldError(absl::StrCat(entry_path, ".ids"), "must be an array");
    }
    for (size_t j = 0; j < ids->size(); ++j) {
      JAMBA_ASSIGN_OR_RETURN(
          int32_t id, json_fields::AsTokenId((*ids)[j], absl::StrCat(entry_path, ".ids[", j, "]")));
      (seen_sequence ? out.suffix : out.prefix).push_back(id);
    }
  }
  if (!seen_sequence) return FieldError(single_path, "has no Sequence entry");
  return out;
}

}  // namespace

absl::StatusOr<SingleTemplate> SingleTemplateFromJson(const nlohmann::json& config,
                                                      absl::string_view path) {
  if (config.is_null()) return SingleTemplate();
  JAMBA_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(config, "type", path));
  if (type == "TemplateProcessing") return FromTemplate(config, path);
  if (type == "ByteLevel") return SingleTemplate();
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    JAMBA_ASSIGN_OR_RETURN(int32_t cls, PairId(config, "cls", path));
    JAMBA_ASSIGN_OR_RETURN(int32_t sep, PairId(config, "sep", path));
    return SingleTemplate{{cls}, {sep}};
  }
  if (type == "Sequence") {
    const nlohmann::json* list = json_fields::Find(config, "processors");
    if (list == nullptr || !list->is_array()) {
      return FieldError(absl::StrCat(path, ".processors"), "must be an array");
    }
    SingleTemplate out;
    for (size_t i = 0; i < list->size(); ++i) {
      JAMBA_ASSIGN_OR_RETURN(
          SingleTemplate t,
          SingleTemplateFromJson((*list)[i], absl::StrCat(path, ".processors[", i, "]")));
      out.prefix.insert(out.prefix.begin(), t.prefix.begin(), t.prefix.end());
      out.suffix.insert(out.suffix.end(), t.suffix.begin(), t.suffix.end());
    }
    return out;
  }
  return FieldError(absl::StrCat(path, ".type"),
                    absl::StrCat("has unsupported post-processor type '", type, "'"));
}

}  // namespace jamba
