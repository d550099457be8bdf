// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): turns one pre-tokenized word
// into token ids by applying ranked merges, exactly like the `tokenizers` library: characters
// (with continuing_subword_prefix / end_of_word_suffix), byte fallback to <0xNN> tokens, the
// unknown token (fused when fuse_unk), then the lowest-ranked adjacent pair is merged first
// (leftmost among equal ranks) until no merge applies. ignore_merges looks the whole word up
// first. Dropout is not supported (only null or 0).
//
// Thread-safe: Tokenize may be called concurrently; results per word are cached.
#ifndef JAMBA_ENGINE_TOKENIZER_BPE_MODEL_H_
#define JAMBA_ENGINE_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace jamba {

class BpeModel {
 public:
  // `config` is the tokenizer.json "model" object found at `path`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& config,
                                                            absl::string_view path);

  // Appends the ids of `word` (non-empty UTF-8) to `ids`.
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token of `id`, or nullptr if the vocabulary has no such id.
  const std::string* IdToToken(int32_t id) const;
  // Largest id in the vocabulary, -1 if empty.
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  // Whether `id` is one of the <0xNN> byte-fallback tokens (only when byte_fallback is on).
  bool IsByteFallbackToken(int32_t id) const;
  bool byte_fallback() const { return byte_fallback_; }

 private:
  BpeModel() = default;
  std::vector<int32_t> TokenizeUncached(absl::string_view word) const;

  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // id of <0xNN>, or -1

  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_TOKENIZER_BPE_MODEL_H_
