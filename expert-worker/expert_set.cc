#include "expert-worker/expert_set.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace jamba {

absl::StatusOr<ExpertSet> ParseExpertSet(absl::string_view text) {
  ExpertSet set;
  text = absl::StripAsciiWhitespace(text);
  if (text == "all") {
    set.all = true;
    return set;
  }
  for (absl::string_view group : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> lr = absl::StrSplit(group, ':');
    int64_t layer = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(lr.first), &layer) || layer < 0 ||
        lr.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("experts: '", group, "' is not LAYER:EXPERT,EXPERT,..."));
    }
    for (absl::string_view e : absl::StrSplit(lr.second, ',')) {
      int64_t expert = 0;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(e), &expert) || expert < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("experts: '", e, "' in '", group, "' is not an expert index"));
      }
      set.pairs.insert({layer, expert});
    }
  }
  if (set.pairs.empty()) {
    return absl::InvalidArgumentError("experts: empty (use 'all' or LAYER:E,E;...)");
  }
  return set;
}

}  // namespace jamba
