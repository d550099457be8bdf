// Text <-> token ids for Hugging Face `tokenizers` files (tokenizer.json), matching the Python
// `tokenizers` library as used by `transformers` for the model families this engine serves:
// byte-level BPE (GPT-2 / GPT-NeoX / Falcon / Mamba) and SentencePiece-style BPE with byte
// fallback (Llama / Mistral / Mixtral / Jamba).
//
// Pipeline of Encode: added tokens are cut out of the raw text, the rest is normalized, cut at
// normalized added tokens, pre-tokenized into words, each word is BPE-encoded, and the
// post-processor's special tokens are added (add_special_tokens). Decode maps ids to token
// strings and runs the decoder.
//
// BOS/EOS: as in transformers 5 (which these fixtures were made with), the tokenizer.json
// post_processor alone decides which special tokens Encode adds; tokenizer_config.json's
// add_bos_token / add_eos_token are ignored when a tokenizer.json exists (transformers 4's
// LlamaTokenizerFast instead rewrote the post-processor from them; real Llama/Mistral/Jamba
// files agree with their config, so both give the same ids there). tokenizer_config.json names
// the bos/eos tokens reported by bos_id()/eos_id() and, like transformers, its named special
// tokens (bos/eos/unk/pad) are added as special added tokens when tokenizer.json lacks them.
//
// Not supported (rejected when loading with InvalidArgument): models other than BPE, BPE
// dropout, and the normalizers/pre-tokenizers/decoders not listed in their headers. The
// truncation and padding sections are ignored. Thread-safe after construction.
#ifndef JAMBA_ENGINE_TOKENIZER_TOKENIZER_H_
#define JAMBA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/post_processor.h"
#include "engine/tokenizer/pre_tokenizer.h"

namespace jamba {

class Tokenizer {
 public:
  // Reads `dir`/tokenizer.json and, if present, `dir`/tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // `tokenizer_config_json` may be empty (no config).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      const std::string& tokenizer_json, const std::string& tokenizer_config_json);

  // Text that is not valid UTF-8 -> InvalidArgument.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special_tokens = true) const;
  // An id that is no token -> InvalidArgument naming it. Invalid UTF-8 produced by byte tokens
  // becomes U+FFFD exactly as in `tokenizers`, so the result is always valid UTF-8.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  // Max id + 1 over the model vocabulary and the added tokens.
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token string of `id`; empty if `id` is no token.
  std::string IdToToken(int32_t id) const;
  bool IsValidId(int32_t id) const;
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  // Whether `id` is a special added token (what skip_special_tokens removes).
  bool IsSpecial(int32_t id) const;
  // Whether Decode treats `id` as one byte of a ByteFallback run.
  bool IsByteFallbackToken(int32_t id) const;

 private:
  Tokenizer() = default;
  // Appends the ids of a text piece that contains no added token.
  void EncodeText(std::vector<PreToken> pieces, std::vector<int32_t>* ids) const;
  // Token string of `id` or nullptr.
  const std::string* TokenString(int32_t id) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  SingleTemplate post_processor_;
  AddedVocabulary added_;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_TOKENIZER_H_
