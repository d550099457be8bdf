#include "engine/tokenizer/streaming_detokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace jamba {
namespace {

bool EndsWithReplacementChar(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

}  // namespace

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

absl::StatusOr<std::string> StreamingDetokenizer::Push(int32_t id) {
  if (!tokenizer_->IsValidId(id)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown token id ", id));
  }
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  ids_.push_back(id);
  if (tokenizer_->IsByteFallbackToken(id)) return std::string();
  JAMBA_ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_));
  if (text.size() <= context_text_.size() || EndsWithReplacementChar(text) ||
      text.compare(0, context_text_.size(), context_text_) != 0) {
    return std::string();
  }
  std::string delta = text.substr(context_text_.size());
  // The ids just emitted become the context of the next step.
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  read_offset_ = ids_.size();
  JAMBA_ASSIGN_OR_RETURN(context_text_, tokenizer_->Decode(ids_));
  return delta;
}

absl::StatusOr<std::string> StreamingDetokenizer::Flush() {
  JAMBA_ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_));
  ids_.clear();
  read_offset_ = 0;
  std::string context = std::move(context_text_);
  context_text_.clear();
  if (text.compare(0, context.size(), context) != 0) {
    return absl::InternalError("streaming detokenizer: decoded context changed");
  }
  return text.substr(context.size());
}

}  // namespace jamba
