#include "engine/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& config,
                                                             absl::string_view path) {
  using json_fields::FieldError;
  std::unique_ptr<BpeModel> m(new BpeModel());
  JAMBA_ASSIGN_OR_RETURN(const std::string type,
                         json_fields::GetStringOr(config, "type", path, "BPE"));
  if (type != "BPE") {
    return FieldError(absl::StrCat(path, ".type"),
                      absl::StrCat("has unsupported model type '", type, "' (only BPE)"));
  }
  if (const nlohmann::json* dropout = json_fields::Find(config, "dropout");
      !json_fields::IsNullOrAbsent(dropout) &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return FieldError(absl::StrCat(path, ".dropout"), "must be null (BPE dropout is unsupported)");
  }
  const nlohmann::json* vocab = json_fields::Find(config, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return FieldError(absl::StrCat(path, ".vocab"), "must be an object of token -> id");
  }
  int32_t max_id = -1;
  m->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    JAMBA_ASSIGN_OR_RETURN(
        int32_t id,
        json_fields::AsTokenId(it.value(), absl::StrCat(path, ".vocab[\"", it.key(), "\"]")));
    m->vocab_[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  m->id_to_token_.resize(max_id + 1);
  m->has_id_.assign(max_id + 1, false);
  for (const auto& [token, id] : m->vocab_) {
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
  }

  JAMBA_ASSIGN_OR_RETURN(m->continuing_subword_prefix_,
                         json_fields::GetStringOr(config, "continuing_subword_prefix", path, ""));
  JAMBA_ASSIGN_OR_RETURN(m->end_of_word_suffix_,
                         json_fields::GetStringOr(config, "end_of_word_suffix", path, ""));
  JAMBA_ASSIGN_OR_RETURN(m->fuse_unk_, json_fields::GetBoolOr(config, "fuse_unk", path, false));
  JAMBA_ASSIGN_OR_RETURN(m->byte_fallback_,
                         json_fields::GetBoolOr(config, "byte_fallback", path, false));
  JAMBA_ASSIGN_OR_RETURN(m->ignore_merges_,
                         json_fields::GetBoolOr(config, "ignore_merges", path, false));
  JAMBA_ASSIGN_OR_RETURN(const std::string unk,
                         json_fields::GetStringOr(config, "unk_token", path, ""));
  if (!unk.empty()) {
    auto it = m->vocab_.find(unk);
    if (it == m->vocab_.end()) {
      return FieldError(absl::StrCat(path, ".unk_token"),
                        absl::StrCat("names '", unk, "', which is not in the vocabulary"));
    }
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m->vocab_.find(name);
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }

  const nlohmann::json* merges = json_fields::Find(config, "merges");
  if (json_fields::IsNullOrAbsent(merges)) return m;
  if (!merges->is_array()) return FieldError(absl::StrCat(path, ".merges"), "must be an array");
  m->merges_.reserve(merges->size());
  const size_t prefix_len = m->continuing_subword_prefix_.size();
  for (size_t i = 0; i < merges->size(); ++i) {
    const nlohmann::json& entry = (*merges)[i];
    const std::string entry_path = absl::StrCat(path, ".merges[", i, "]");
    std::string a, b;
    if (entry.is_string()) {
      const std::string s = entry.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return FieldError(entry_path, "must be two tokens separated by one space");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    } else {
      return FieldError(entry_path, "must be \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = m->vocab_.find(a);
    auto ib = m->vocab_.find(b);
    if (ia == m->vocab_.end() || ib == m->vocab_.end()) {
      return FieldError(entry_path, "uses a token that is not in the vocabulary");
    }
    if (b.size() < prefix_len) {
      return FieldError(entry_path, "right token is shorter than continuing_subword_prefix");
    }
    auto inew = m->vocab_.find(a + b.substr(prefix_len));
    if (inew == m->vocab_.end()) {
      return FieldError(entry_path, "produces a token that is not in the vocabulary");
    }
    m->merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(i), inew->second};
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

bool BpeModel::IsByteFallbackToken(int32_t id) const {
  if (!byte_fallback_) return false;
  const std::string* t = IdToToken(id);
  if (t == nullptr || t->size() != 6 || t->compare(0, 3, "<0x") != 0 || (*t)[5] != '>')
    return false;
  for (int b = 0; b < 256; ++b) {
    if (byte_ids_[b] == id) return true;
  }
  return false;
}

void BpeModel::Tokenize(absl::string_view word, std::vector<int32_t>* ids) const {
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> result = TokenizeUncached(word);
  ids->insert(ids->end(), result.begin(), result.end());
  absl::MutexLock lock(&cache_mu_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(word), std::move(result));
}

std::vector<int32_t> BpeModel::TokenizeUncached(absl::string_view word) const {
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) return {it->second};
  }
  // Initial symbols, one per character (or per byte with byte fallback).
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  std::optional<int32_t> pending_unk;
  size_t pos = 0;
  std::string piece;
  while (pos < word.size()) {
    const size_t start = pos;
    DecodeUtf8(word, &pos);
    const bool is_first = start == 0;
    const bool is_last = pos >= word.size();
    piece.clear();
    if (!is_first) piece += continuing_subword_prefix_;
    piece.append(word.data() + start, pos - start);
    if (is_last) piece += end_of_word_suffix_;
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      if (pending_unk) {
        symbols.push_back(*pending_unk);
        pending_unk.reset();
      }
      symbols.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t i = start; i < pos; ++i) {
        all = all && byte_ids_[static_cast<unsigned char>(word[i])] >= 0;
      }
      if (all) {
        // Like `tokenizers`, a pending unknown token is not flushed before byte tokens.
        for (size_t i = start; i < pos; ++i) {
          symbols.push_back(byte_ids_[static_cast<unsigned char>(word[i])]);
        }
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) symbols.push_back(*pending_unk);
      pending_unk = unk_id_;
    }
    // Without an unknown token the character is dropped, as in `tokenizers`.
  }
  if (pending_unk) symbols.push_back(*pending_unk);
  if (symbols.size() < 2 || merges_.empty()) return symbols;

  // Doubly linked list over `symbols`; merged-away entries get id -1.
  const int n = static_cast<int>(symbols.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int left) {
    const int right = next[left];
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left], symbols[right]));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const int left = top.pos;
    if (symbols[left] < 0) continue;
    const int right = next[left];
    if (right < 0) continue;
    auto it = merges_.find(PairKey(symbols[left], symbols[right]));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
    symbols[left] = top.new_id;
    symbols[right] = -1;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    if (prev[left] >= 0) consider(prev[left]);
    consider(left);
  }
  std::vector<int32_t> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(symbols[i]);
  return out;
}

}  // namespace jamba
