// Incremental detokenization for streaming generation: ids go in one at a time, text deltas
// come out. Guarantees:
//   * every delta is valid UTF-8 (bytes of an unfinished character are held back);
//   * the concatenation of all deltas and the final Flush() equals
//     Tokenizer::Decode(all ids, skip_special_tokens).
// Technique: each new id is decoded together with the ids of the previous delta as context and
// only the text beyond the context's own decoding is emitted, so decoder effects that depend on
// neighbours (Metaspace dropping the first token's space, Strip of the leading space) apply as
// in the full decode. Text ending in U+FFFD is held back (it may be a character still being
// completed), and so is a run of ByteFallback byte tokens, whose decoding can change until the
// run ends. Skipped special tokens are dropped before decoding, as Decode does.
//
// Not thread-safe; one instance per stream. The tokenizer must outlive it.
#ifndef JAMBA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_
#define JAMBA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace jamba {

class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens = false);

  // Returns the text that `id` completes (often empty). Unknown id -> InvalidArgument, and the
  // stream is unchanged.
  absl::StatusOr<std::string> Push(int32_t id);
  // Returns all held-back text and resets the stream.
  absl::StatusOr<std::string> Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // kept ids from the start of the current context
  size_t read_offset_ = 0;    // ids_[0, read_offset_) are already emitted (the context)
  std::string context_text_;  // Decode(ids_[0, read_offset_))
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_
