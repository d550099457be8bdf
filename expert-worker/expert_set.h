// Which (MoE layer, expert) pairs a worker holds, from the command line / cluster config:
// "all", or "LAYER:E,E,...;LAYER:E,..." (e.g. "1:0,1,2;3:4,5").
#ifndef JAMBA_EXPERT_WORKER_EXPERT_SET_H_
#define JAMBA_EXPERT_WORKER_EXPERT_SET_H_

#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jamba {

struct ExpertSet {
  bool all = false;
  std::set<std::pair<int64_t, int64_t>> pairs;  // (layer, expert)

  bool Contains(int64_t layer, int64_t expert) const {
    return all || pairs.count({layer, expert}) != 0;
  }
};

// Errors name the bad item. Ranges are not checked here (the model knows its layers).
absl::StatusOr<ExpertSet> ParseExpertSet(absl::string_view text);

}  // namespace jamba

#endif  // JAMBA_EXPERT_WORKER_EXPERT_SET_H_
