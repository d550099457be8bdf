#include "engine/sampling/stop_checker.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace jamba {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      break;
  }
  return "";
}

StopChecker::StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids)
    : stop_ids_(params.stop_token_ids), max_new_tokens_(params.max_new_tokens) {
  for (const std::string& s : params.stop_strings) {
    if (!s.empty()) stop_strings_.push_back(s);  // validation rejects them; never match one
  }
  if (!params.ignore_eos) {
    stop_ids_.insert(stop_ids_.end(), eos_token_ids.begin(), eos_token_ids.end());
  }
}

bool StopChecker::IsStopToken(int32_t token) const {
  return std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end();
}

std::string StopChecker::ReleaseAll() {
  std::string out = std::move(pending_);
  pending_.clear();
  released_ += out;
  return out;
}

StopUpdate StopChecker::Append(int32_t token, absl::string_view text_delta) {
  JAMBA_CHECK(!finished());
  ++num_tokens_;
  StopUpdate update;

  if (IsStopToken(token)) {
    finish_reason_ = FinishReason::kStop;
    stop_token_ = token;
    update.text = ReleaseAll();  // nothing can complete a held-back prefix any more
    update.finish_reason = finish_reason_;
    return update;
  }

  // Every occurrence not yet seen lies inside pending_ + delta: released text never ends
  // with the beginning of a stop string (that suffix is what pending_ holds).
  pending_.append(text_delta.data(), text_delta.size());
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : stop_strings_) {
    const size_t pos = pending_.find(s);
    if (pos < best_pos) {
      best_pos = pos;
      best = &s;
    }
  }
  if (best != nullptr) {
    pending_.resize(best_pos);
    finish_reason_ = FinishReason::kStop;
    stop_string_ = *best;
    update.text = ReleaseAll();
    update.finish_reason = finish_reason_;
    return update;
  }

  if (num_tokens_ >= max_new_tokens_) {
    finish_reason_ = FinishReason::kLength;
    update.text = ReleaseAll();
    update.finish_reason = finish_reason_;
    return update;
  }

  // Hold back the longest suffix of pending_ that is a proper prefix of a stop string (no
  // stop string occurs in pending_ now, so no suffix equals a whole one).
  size_t hold = 0;
  for (const std::string& s : stop_strings_) {
    const size_t longest = std::min(s.size() - 1, pending_.size());
    for (size_t len = longest; len > hold; --len) {
      if (absl::string_view(pending_).substr(pending_.size() - len) ==
          absl::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  update.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  released_ += update.text;
  return update;
}

}  // namespace jamba
