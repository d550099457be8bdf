#include "engine/config/generation_config.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/config/strict_json.h"

namespace jamba {

absl::Status MergeGenerationConfig(const std::string& json_text, const std::string& source,
                                   ModelConfig* config) {
  absl::StatusOr<nlohmann::json> parsed = ParseStrictJson(json_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parsed.status().message()));
  }
  if (!parsed->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  auto it = parsed->find("eos_token_id");
  if (it == parsed->end() || it->is_null()) return absl::OkStatus();
  std::vector<nlohmann::json> items;
  if (it->is_array()) {
    items.assign(it->begin(), it->end());
  } else {
    items.push_back(*it);
  }
  std::vector<int64_t> ids;
  for (const nlohmann::json& item : items) {
    if (!item.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": eos_token_id: expected integers, got ", item.type_name()));
    }
    const int64_t id = item.get<int64_t>();
    if (id < 0 || id >= config->vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": eos_token_id: ", id,
                                                     " is outside the vocabulary [0, ",
                                                     config->vocab_size, ")"));
    }
    ids.push_back(id);
  }
  for (int64_t id : ids) {
    auto& eos = config->eos_token_ids;
    if (std::find(eos.begin(), eos.end(), id) == eos.end()) eos.push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace jamba
