#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

bool IsWordChar(char32_t c) { return IsLetter(c) || IsNumber(c) || c == '_'; }

// Last code point of s[0, end), which must be non-empty valid UTF-8.
char32_t LastCodePoint(absl::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return DecodeUtf8(s, &start);
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = i;
    if (t.special) special_contents_.insert(t.content);
    if (t.content.empty()) continue;
    if (!t.normalized) {
      AddPattern(&raw_, t.content, i);
    } else {
      AddPattern(&normalized_, normalizer ? normalizer->Normalize(t.content) : t.content, i);
    }
  }
}

void AddedVocabulary::AddPattern(Matcher* m, std::string pattern, size_t token_index) {
  if (pattern.empty()) return;
  m->first_byte[static_cast<unsigned char>(pattern[0])] = true;
  if (std::find(m->lengths.begin(), m->lengths.end(), pattern.size()) == m->lengths.end()) {
    m->lengths.push_back(pattern.size());
    std::sort(m->lengths.rbegin(), m->lengths.rend());
  }
  m->patterns.emplace(std::move(pattern), token_index);
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(absl::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<AddedSplit> AddedVocabulary::Split(absl::string_view text, const Matcher& m) const {
  std::vector<AddedSplit> out;
  size_t start_offset = 0;  // end of the previous accepted match
  size_t search = 0;        // where the next match may start
  while (!m.patterns.empty() && search < text.size()) {
    // Leftmost, then longest match at or after `search`.
    size_t begin = text.size(), len = 0, token_index = 0;
    for (size_t i = search; i < text.size() && len == 0; ++i) {
      if (!m.first_byte[static_cast<unsigned char>(text[i])]) continue;
      for (size_t l : m.lengths) {
        if (i + l > text.size()) continue;
        auto it = m.patterns.find(text.substr(i, l));
        if (it != m.patterns.end()) {
          begin = i;
          len = l;
          token_index = it->second;
          break;
        }
      }
    }
    if (len == 0) break;
    size_t stop = begin + len;
    search = stop;
    const AddedToken& token = tokens_[token_index];
    if (token.single_word) {
      size_t p = stop;
      const bool start_ok = begin == 0 || !IsWordChar(LastCodePoint(text, begin));
      const bool stop_ok = stop == text.size() || !IsWordChar(DecodeUtf8(text, &p));
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) {
      size_t b = begin;
      while (b > 0) {
        size_t prev = b - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        size_t p = prev;
        if (!IsWhitespace(DecodeUtf8(text, &p))) break;
        b = prev;
      }
      begin = std::max(b, start_offset);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!IsWhitespace(DecodeUtf8(text, &p))) break;
        stop = p;
      }
      search = stop;  // never match inside the stripped whitespace
    }
    if (start_offset < begin) {
      out.push_back(
          {start_offset, std::string(text.substr(start_offset, begin - start_offset)), -1});
    }
    out.push_back({begin, std::string(text.substr(begin, stop - begin)), token.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) {
    out.push_back({start_offset, std::string(text.substr(start_offset)), -1});
  }
  return out;
}

}  // namespace jamba
