// config.json handling shared by the benchmarks: --config FILE with --set KEY=VALUE overrides.
#ifndef JAMBA_BENCH_BENCH_CONFIG_H_
#define JAMBA_BENCH_BENCH_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace jamba {

// The text of `path` with each KEY=VALUE applied (VALUE parsed as JSON, else taken as a
// string). InvalidArgument names a malformed override or a file that is not a JSON object.
absl::StatusOr<std::string> ConfigWithOverrides(const std::string& path,
                                                const std::vector<std::string>& overrides);

}  // namespace jamba

#endif  // JAMBA_BENCH_BENCH_CONFIG_H_
