// Pre-tokenizers of the tokenizer.json "pre_tokenizer" section: they cut normalized text into
// the pieces ("words") the model encodes one at a time, and may rewrite them (ByteLevel maps
// bytes to printable characters, Metaspace turns spaces into U+2581).
//
// Supported types: Sequence, Split (String/Regex pattern, all five behaviours, invert),
// ByteLevel (add_prefix_space, use_regex with the GPT-2 pattern), Metaspace (replacement,
// prepend_scheme always/first/never or legacy add_prefix_space, split), Digits, Punctuation,
// Whitespace, WhitespaceSplit, BertPreTokenizer. Others are rejected when loading.
#ifndef JAMBA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define JAMBA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace jamba {

struct PreToken {
  std::string text;  // UTF-8, never empty once a pre-tokenizer has run
  // Whether the piece begins at offset 0 of the original input (what Metaspace's "first"
  // prepend scheme looks at).
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their pre-tokenization, in order.
  virtual void PreTokenize(std::vector<PreToken>* pieces) const = 0;
};

// JSON null yields nullptr (the whole piece is one word).
absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config,
                                                                   absl::string_view path);

// The GPT-2 pre-tokenization pattern that ByteLevel uses when use_regex is true.
extern const char kGpt2SplitPattern[];

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
