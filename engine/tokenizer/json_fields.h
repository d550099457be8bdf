// Typed, non-throwing accessors for tokenizer.json objects. Every error names the JSON path
// (e.g. "model.merges[3]") so a malformed file is easy to locate.
#ifndef JAMBA_ENGINE_TOKENIZER_JSON_FIELDS_H_
#define JAMBA_ENGINE_TOKENIZER_JSON_FIELDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace json_fields {

inline absl::Status FieldError(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: field '", path, "' ", what));
}

// Returns the member `key` of object `obj` or nullptr if absent (or `obj` is not an object).
inline const nlohmann::json* Find(const nlohmann::json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

inline bool IsNullOrAbsent(const nlohmann::json* v) { return v == nullptr || v->is_null(); }

inline absl::StatusOr<std::string> GetString(const nlohmann::json& obj, const std::string& key,
                                             absl::string_view path) {
  const nlohmann::json* v = Find(obj, key);
  if (v == nullptr) return FieldError(absl::StrCat(path, ".", key), "is missing");
  if (!v->is_string()) return FieldError(absl::StrCat(path, ".", key), "must be a string");
  return v->get<std::string>();
}

inline absl::StatusOr<std::string> GetStringOr(const nlohmann::json& obj, const std::string& key,
                                               absl::string_view path, std::string fallback) {
  const nlohmann::json* v = Find(obj, key);
  if (IsNullOrAbsent(v)) return fallback;
  if (!v->is_string()) return FieldError(absl::StrCat(path, ".", key), "must be a string");
  return v->get<std::string>();
}

inline absl::StatusOr<bool> GetBoolOr(const nlohmann::json& obj, const std::string& key,
                                      absl::string_view path, bool fallback) {
  const nlohmann::json* v = Find(obj, key);
  if (IsNullOrAbsent(v)) return fallback;
  if (!v->is_boolean()) return FieldError(absl::StrCat(path, ".", key), "must be a boolean");
  return v->get<bool>();
}

inline absl::StatusOr<int64_t> GetIntOr(const nlohmann::json& obj, const std::string& key,
                                        absl::string_view path, int64_t fallback) {
  const nlohmann::json* v = Find(obj, key);
  if (IsNullOrAbsent(v)) return fallback;
  if (!v->is_number_integer())
    return FieldError(absl::StrCat(path, ".", key), "must be an integer");
  return v->get<int64_t>();
}

// Largest accepted token id. Real vocabularies stay far below it; the bound keeps a corrupt file
// from making the loader allocate tables for billions of ids.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// A token id: an integer in [0, kMaxTokenId].
inline absl::StatusOr<int32_t> AsTokenId(const nlohmann::json& v, absl::string_view path) {
  if (!v.is_number_integer()) return FieldError(path, "must be an integer token id");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(kMaxTokenId)) {
    return FieldError(path, "is out of the token id range [0, 16777215]");
  }
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id > kMaxTokenId)
    return FieldError(path, "is out of the token id range [0, 16777215]");
  return static_cast<int32_t>(id);
}

}  // namespace json_fields
}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_JSON_FIELDS_H_
