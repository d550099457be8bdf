// config.json handling shared by the benchmarks: --config FILE with --set KEY=VALUE overrides.
#ifndef JAMBA_BENCH_BENCH_CONFIG_H_
#define JAMBA_BENCH_BENCH_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/flag_parser.h"

namespace jamba {

// The text of `path` with each KEY=VALUE applied (VALUE parsed as JSON, else taken as a
// string). InvalidArgument names a malformed override or a file that is not a JSON object.
absl::StatusOr<std::string> ConfigWithOverrides(const std::string& path,
                                                const std::vector<std::string>& overrides);

// Where a benchmark's model comes from: a checkpoint folder, or a config.json (with
// overrides) for random weights; and the dtype of the weight matrices.
struct BenchModelFlags {
  std::string model, config;
  std::vector<std::string> overrides;  // KEY=VALUE applied to config.json
  std::string weights = "bf16";
  bool int8_experts = false;  // LoadOptions::int8_experts
};

// Registers --model, --config, --set and --weights (section "Model").
void AddBenchModelFlags(FlagParser& flags, BenchModelFlags* out);

// "1,4,16" -> {1, 4, 16}; InvalidArgument naming --`flag` for an item that is not an integer
// in [1, max]. Empty text is an empty list.
absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view flag,
                                                  int64_t max);

// ParseIntList for --batches, which must name at least one batch size.
absl::StatusOr<std::vector<int>> ParseBatchSizes(absl::string_view text, int max);

}  // namespace jamba

#endif  // JAMBA_BENCH_BENCH_CONFIG_H_
