// Post-processors of the tokenizer.json "post_processor" section, reduced to what matters for a
// single sequence of ids: which special tokens go before and after it when special tokens are
// requested. Supported: TemplateProcessing, ByteLevel (adds nothing), RobertaProcessing,
// BertProcessing, Sequence.
#ifndef JAMBA_ENGINE_TOKENIZER_POST_PROCESSOR_H_
#define JAMBA_ENGINE_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jamba {

struct SingleTemplate {
  std::vector<int32_t> prefix;  // ids placed before the sequence
  std::vector<int32_t> suffix;  // ids placed after it
};

// JSON null yields an empty template.
absl::StatusOr<SingleTemplate> SingleTemplateFromJson(const nlohmann::json& config,
                                                      absl::string_view path);

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_POST_PROCESSOR_H_
