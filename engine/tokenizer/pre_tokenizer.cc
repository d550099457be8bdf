#include "engine/tokenizer/pre_tokenizer.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {

const char kGpt2SplitPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Segment {
  size_t begin, end;  // code point offsets into the piece
  bool is_match;
};

// Covers [0, n) with the given sorted, non-overlapping matches and the gaps between them.
std::vector<Segment> Segments(const std::vector<std::pair<size_t, size_t>>& matches, size_t n) {
  std::vector<Segment> out;
  if (n == 0) return {{0, 0, false}};
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev != n) out.push_back({prev, n, false});
  return out;
}

// The `tokenizers` SplitDelimiterBehavior rules, applied to segments.
std::vector<Segment> ApplyBehavior(std::vector<Segment> segs, Behavior behavior) {
  std::vector<Segment> out;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      return segs;
    case Behavior::kRemoved:
      for (const Segment& s : segs) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case Behavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case Behavior::kMergedWithNext:
      for (size_t i = segs.size(); i-- > 0;) {
        const Segment& s = segs[i];
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().begin = s.begin;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return std::vector<Segment>(out.rbegin(), out.rend());
    case Behavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
  }
  return segs;
}

// Splits every piece at the matches `find` reports (code point ranges), with `behavior`.
void SplitPieces(
    std::vector<PreToken>* pieces, Behavior behavior, bool invert,
    const std::function<std::vector<std::pair<size_t, size_t>>(const std::u32string&)>& find) {
  std::vector<PreToken> out;
  out.reserve(pieces->size());
  for (PreToken& piece : *pieces) {
    const std::u32string cps = Utf8ToCodePoints(piece.text);
    std::vector<Segment> segs = Segments(find(cps), cps.size());
    if (invert) {
      for (Segment& s : segs) s.is_match = !s.is_match;
    }
    for (const Segment& s : ApplyBehavior(std::move(segs), behavior)) {
      if (s.end == s.begin) continue;
      out.push_back(
          {CodePointsToUtf8(cps.substr(s.begin, s.end - s.begin)), piece.at_start && s.begin == 0});
    }
  }
  *pieces = std::move(out);
}

// Matches each code point satisfying `pred`, like the `tokenizers` char-predicate patterns.
std::function<std::vector<std::pair<size_t, size_t>>(const std::u32string&)> CharMatcher(
    bool (*pred)(char32_t)) {
  return [pred](const std::u32string& cps) {
    std::vector<std::pair<size_t, size_t>> m;
    for (size_t i = 0; i < cps.size(); ++i) {
      if (pred(cps[i])) m.emplace_back(i, i + 1);
    }
    return m;
  };
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (const auto& p : parts_) p->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitPieces(pieces, behavior_, invert_,
                [this](const std::u32string& cps) { return pattern_.FindAll(cps); });
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    if (add_prefix_space_) {
      for (PreToken& p : *pieces) {
        if (!p.text.empty() && p.text[0] != ' ') p.text.insert(0, " ");
      }
    }
    if (regex_ != nullptr) {
      SplitPieces(pieces, Behavior::kIsolated, false,
                  [this](const std::u32string& cps) { return regex_->FindAll(cps); });
    }
    for (PreToken& p : *pieces) p.text = BytesToByteLevel(p.text);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // null when use_regex is false
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    AppendUtf8(replacement, &replacement_utf8_);
  }
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (PreToken& p : *pieces) {
      if (p.text.empty()) continue;
      std::string text;
      text.reserve(p.text.size() + 3);
      for (char c : p.text) {
        if (c == ' ') {
          text += replacement_utf8_;
        } else {
          text.push_back(c);
        }
      }
      const bool starts = text.compare(0, replacement_utf8_.size(), replacement_utf8_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        text.insert(0, replacement_utf8_);
      }
      p.text = std::move(text);
    }
    if (split_) {
      const char32_t r = replacement_;
      SplitPieces(pieces, Behavior::kMergedWithNext, false, [r](const std::u32string& cps) {
        std::vector<std::pair<size_t, size_t>> m;
        for (size_t i = 0; i < cps.size(); ++i) {
          if (cps[i] == r) m.emplace_back(i, i + 1);
        }
        return m;
      });
    }
  }

 private:
  char32_t replacement_;
  std::string replacement_utf8_;
  PrependScheme scheme_;
  bool split_;
};

class CharSplitPreTokenizer : public PreTokenizer {
 public:
  CharSplitPreTokenizer(bool (*pred)(char32_t), Behavior behavior)
      : pred_(pred), behavior_(behavior) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitPieces(pieces, behavior_, false, CharMatcher(pred_));
  }

 private:
  bool (*pred_)(char32_t);
  Behavior behavior_;
};

// Keeps only the matches of a regex (the `Whitespace` pre-tokenizer).
class RegexKeepPreTokenizer : public PreTokenizer {
 public:
  explicit RegexKeepPreTokenizer(std::unique_ptr<Regex> regex) : regex_(std::move(regex)) {}
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitPieces(pieces, Behavior::kRemoved, true,
                [this](const std::u32string& cps) { return regex_->FindAll(cps); });
  }

 private:
  std::unique_ptr<Regex> regex_;
};

bool IsNumberPred(char32_t c) { return IsNumber(c); }
bool IsWhitespacePred(char32_t c) { return IsWhitespace(c); }
bool IsPunctuationPred(char32_t c) { return IsPunctuationLikeTokenizers(c); }

absl::StatusOr<Behavior> ParseBehavior(const nlohmann::json& config, absl::string_view path,
                                       const char* fallback) {
  JAMBA_ASSIGN_OR_RETURN(std::string name,
                         json_fields::GetStringOr(config, "behavior", path, fallback));
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  return json_fields::FieldError(absl::StrCat(path, ".behavior"),
                                 absl::StrCat("has unknown value '", name, "'"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config,
                                                                   absl::string_view path) {
  using json_fields::FieldError;
  using Ptr = std::unique_ptr<PreTokenizer>;
  if (config.is_null()) return Ptr();
  JAMBA_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(config, "type", path));
  if (type == "Sequence") {
    const nlohmann::json* list = json_fields::Find(config, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return FieldError(absl::StrCat(path, ".pretokenizers"), "must be an array");
    }
    std::vector<Ptr> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      JAMBA_ASSIGN_OR_RETURN(
          Ptr part,
          PreTokenizerFromJson((*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]")));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return Ptr(new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "Split") {
    const nlohmann::json* pattern = json_fields::Find(config, "pattern");
    if (pattern == nullptr) return FieldError(absl::StrCat(path, ".pattern"), "is missing");
    JAMBA_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, absl::StrCat(path, ".pattern")));
    JAMBA_ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(config, path, "Removed"));
    JAMBA_ASSIGN_OR_RETURN(bool invert, json_fields::GetBoolOr(config, "invert", path, false));
    return Ptr(new SplitPreTokenizer(std::move(p), behavior, invert));
  }
  if (type == "ByteLevel") {
    JAMBA_ASSIGN_OR_RETURN(bool prefix,
                           json_fields::GetBoolOr(config, "add_prefix_space", path, true));
    JAMBA_ASSIGN_OR_RETURN(bool use_regex, json_fields::GetBoolOr(config, "use_regex", path, true));
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      JAMBA_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2SplitPattern));
    }
    return Ptr(new ByteLevelPreTokenizer(prefix, std::move(regex)));
  }
  if (type == "Metaspace") {
    JAMBA_ASSIGN_OR_RETURN(std::string replacement,
                           json_fields::GetString(config, "replacement", path));
    const std::u32string r = IsValidUtf8(replacement) ? Utf8ToCodePoints(replacement) : U"";
    if (r.size() != 1) {
      return FieldError(absl::StrCat(path, ".replacement"), "must be exactly one character");
    }
    PrependScheme scheme = PrependScheme::kAlways;
    if (const nlohmann::json* s = json_fields::Find(config, "prepend_scheme");
        !json_fields::IsNullOrAbsent(s)) {
      const std::string name = s->is_string() ? s->get<std::string>() : "";
      if (name == "always") {
        scheme = PrependScheme::kAlways;
      } else if (name == "first") {
        scheme = PrependScheme::kFirst;
      } else if (name == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return FieldError(absl::StrCat(path, ".prepend_scheme"),
                          "must be \"always\", \"first\" or \"never\"");
      }
    } else {
      JAMBA_ASSIGN_OR_RETURN(bool add,
                             json_fields::GetBoolOr(config, "add_prefix_space", path, true));
      scheme = add ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    JAMBA_ASSIGN_OR_RETURN(bool split, json_fields::GetBoolOr(config, "split", path, true));
    return Ptr(new MetaspacePreTokenizer(r[0], scheme, split));
  }
  if (type == "Digits") {
    JAMBA_ASSIGN_OR_RETURN(bool individual,
                           json_fields::GetBoolOr(config, "individual_digits", path, false));
    return Ptr(new CharSplitPreTokenizer(IsNumberPred,
                                         individual ? Behavior::kIsolated : Behavior::kContiguous));
  }
  if (type == "Punctuation") {
    JAMBA_ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(config, path, "Isolated"));
    return Ptr(new CharSplitPreTokenizer(IsPunctuationPred, behavior));
  }
  if (type == "WhitespaceSplit") {
    return Ptr(new CharSplitPreTokenizer(IsWhitespacePred, Behavior::kRemoved));
  }
  if (type == "Whitespace") {
    JAMBA_ASSIGN_OR_RETURN(auto regex, Regex::Compile(R"(\w+|[^\w\s]+)"));
    return Ptr(new RegexKeepPreTokenizer(std::move(regex)));
  }
  if (type == "BertPreTokenizer") {
    std::vector<Ptr> parts;
    parts.push_back(Ptr(new CharSplitPreTokenizer(IsWhitespacePred, Behavior::kRemoved)));
    parts.push_back(Ptr(new CharSplitPreTokenizer(IsPunctuationPred, Behavior::kIsolated)));
    return Ptr(new SequencePreTokenizer(std::move(parts)));
  }
  return FieldError(absl::StrCat(path, ".type"),
                    absl::StrCat("has unsupported pre-tokenizer type '", type, "'"));
}

}  // namespace jamba
