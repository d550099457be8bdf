#include "bench/bench_config.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace jamba {

absl::StatusOr<std::string> ConfigWithOverrides(const std::string& path,
                                                const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  for (const std::string& kv : overrides) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--set: expected KEY=VALUE, got '", kv, "'"));
    }
    nlohmann::json v = nlohmann::json::parse(kv.substr(eq + 1), nullptr, false);
    j[kv.substr(0, eq)] = v.is_discarded() ? nlohmann::json(kv.substr(eq + 1)) : v;
  }
  return j.dump();
}

void AddBenchModelFlags(FlagParser& flags, BenchModelFlags* out) {
  flags.String("model", &out->model, "checkpoint folder", "Model", "DIR");
  flags.String("config", &out->config, "config.json for random weights", "Model", "FILE");
  flags.Repeated(
      "set",
      [out](absl::string_view v) {
        out->overrides.emplace_back(v);
        return absl::OkStatus();
      },
      "KEY=VALUE", "override a config.json field", "Model");
  flags.String("weights", &out->weights, "weight matrices in f32 or bf16", "Model", "f32|bf16");
  flags.Bool("int8-experts", &out->int8_experts,
             "quantise MoE expert matrices to int8 at load (per-row scales)", "Model");
}

absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view flag,
                                                  int64_t max) {
  std::vector<int64_t> out;
  if (text.empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(item, &v) || v < 1 || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", item, "' is not an integer in [1, ", max, "]"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<int>> ParseBatchSizes(absl::string_view text, int max) {
  if (text.empty()) return absl::InvalidArgumentError("--batches: no batch size given");
  absl::StatusOr<std::vector<int64_t>> parsed = ParseIntList(text, "batches", max);
  if (!parsed.ok()) return parsed.status();
  return std::vector<int>(parsed->begin(), parsed->end());
}

}  // namespace jamba
