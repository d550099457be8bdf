// The "added_tokens" of tokenizer.json: tokens matched verbatim in the input before the model
// runs (special tokens such as <s>, and user-added ones). As in `tokenizers`, tokens with
// normalized=false are matched in the raw input, the others in the normalized text (against
// their own normalized content); matching is leftmost-longest and non-overlapping; lstrip /
// rstrip extend a match over adjacent whitespace and single_word requires word boundaries.
#ifndef JAMBA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
#define JAMBA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/normalizer.h"

namespace jamba {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = true;
};

// One piece of a split input: either text for the model (id < 0) or an added token.
struct AddedSplit {
  size_t offset;     // byte offset of the piece in the string that was split
  std::string text;  // the piece (for tokens: the matched text, including stripped spaces)
  int32_t id;        // -1 for plain text
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` (may be null) is applied to the content of normalized tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits raw input at the tokens with normalized=false.
  std::vector<AddedSplit> SplitRaw(absl::string_view text) const { return Split(text, raw_); }
  // Splits normalized text at the tokens with normalized=true.
  std::vector<AddedSplit> SplitNormalized(absl::string_view text) const {
    return Split(text, normalized_);
  }

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(absl::string_view content) const;
  bool IsSpecialContent(absl::string_view content) const {
    return special_contents_.contains(content);
  }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // Patterns of one matching pass: pattern text -> index into tokens_.
  struct Matcher {
    absl::flat_hash_map<std::string, size_t> patterns;
    std::vector<size_t> lengths;  // distinct pattern lengths, longest first
    bool first_byte[256] = {};
  };
  static void AddPattern(Matcher* m, std::string pattern, size_t token_index);
  std::vector<AddedSplit> Split(absl::string_view text, const Matcher& m) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  absl::flat_hash_set<std::string> special_contents_;
  Matcher raw_;
  Matcher normalized_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
