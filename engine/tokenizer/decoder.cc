#include "engine/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (const auto& d : parts_) tokens = d->DecodeChain(std::move(tokens));
    return tokens;
  }
  bool HasByteFallback() const override {
    for (const auto& d : parts_) {
      if (d->HasByteFallback()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Maps each token's characters back to bytes (a token with a character outside the byte map
// contributes its own UTF-8 bytes), then decodes all bytes together, lossily.
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      std::string mapped;
      bool ok = true;
      size_t pos = 0;
      while (pos < t.size()) {
        const int b = CharToByte(DecodeUtf8(t, &pos));
        if (b < 0) {
          ok = false;
          break;
        }
        mapped.push_back(static_cast<char>(b));
      }
      bytes += ok ? mapped : t;
    }
    return {Utf8Lossy(bytes)};
  }
};

// Replaces the replacement character by a space; in the first token it is dropped instead
// (unless the prepend scheme is "never").
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      std::string out;
      out.reserve(t.size());
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(t[pos++]);
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) t = pattern_.ReplaceAll(t, content_);
    return tokens;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Runs of <0xNN> tokens become the string they encode, or one U+FFFD per byte if the run is
// not valid UTF-8.
class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    auto flush = [&]() {
      if (run.empty()) return;
      if (IsValidUtf8(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
    };
    for (std::string& t : tokens) {
      unsigned char byte;
      if (ParseByteFallbackToken(t, &byte)) {
        run.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
  bool HasByteFallback() const override { return true; }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    return {all};
  }
};

// Removes up to `start` leading and `stop` trailing occurrences of `content` from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      std::u32string cps = Utf8ToCodePoints(t);
      size_t b = 0, e = cps.size();
      for (size_t i = 0; i < start_ && b < e && cps[b] == content_; ++i) ++b;
      for (size_t i = 0; i < stop_ && e > b && cps[e - 1] == content_; ++i) --e;
      t = CodePointsToUtf8(cps.substr(b, e - b));
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

}  // namespace

bool ParseByteFallbackToken(absl::string_view token, unsigned char* byte) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return false;
  const int hi = HexValue(token[3]), lo = HexValue(token[4]);
  if (lo < 0) return false;
  if (hi < 0) {
    if (token[3] != '+') return false;  // Rust's from_str_radix accepts a leading '+'
    *byte = static_cast<unsigned char>(lo);
    return true;
  }
  *byte = static_cast<unsigned char>(hi * 16 + lo);
  return true;
}

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config,
                                                         absl::string_view path) {
  using json_fields::FieldError;
  using Ptr = std::unique_ptr<Decoder>;
  if (config.is_null()) return Ptr();
  JAMBA_ASSIGN_OR_RETURN(const std::string type, json_fields::GetString(config, "type", path));
  if (type == "Sequence") {
    const nlohmann::json* list = json_fields::Find(config, "decoders");
    if (list == nullptr || !list->is_array()) {
      return FieldError(absl::StrCat(path, ".decoders"), "must be an array");
    }
    std::vector<Ptr> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      JAMBA_ASSIGN_OR_RETURN(Ptr part,
                             DecoderFromJson((*list)[i], absl::StrCat(path, ".decoders[", i, "]")));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return Ptr(new SequenceDecoder(std::move(parts)));
  }
  if (type == "ByteLevel") return Ptr(new ByteLevelDecoder());
  if (type == "Metaspace") {
    JAMBA_ASSIGN_OR_RETURN(std::string replacement,
                           json_fields::GetString(config, "replacement", path));
    if (replacement.empty()) {
      return FieldError(absl::StrCat(path, ".replacement"), "must not be empty");
    }
    bool strip_first = true;
    if (const nlohmann::json* s = json_fields::Find(config, "prepend_scheme");
        !json_fields::IsNullOrAbsent(s)) {
      const std::string name = s->is_string() ? s->get<std::string>() : "";
      if (name != "always" && name != "first" && name != "never") {
        return FieldError(absl::StrCat(path, ".prepend_scheme"),
                          "must be \"always\", \"first\" or \"never\"");
      }
      strip_first = name != "never";
    } else {
      JAMBA_ASSIGN_OR_RETURN(strip_first,
                             json_fields::GetBoolOr(config, "add_prefix_space", path, true));
    }
    return Ptr(new MetaspaceDecoder(std::move(replacement), strip_first));
  }
  if (type == "Replace") {
    const nlohmann::json* pattern = json_fields::Find(config, "pattern");
    if (pattern == nullptr) return FieldError(absl::StrCat(path, ".pattern"), "is missing");
    JAMBA_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, absl::StrCat(path, ".pattern")));
    JAMBA_ASSIGN_OR_RETURN(std::string content, json_fields::GetString(config, "content", path));
    return Ptr(new ReplaceDecoder(std::move(p), std::move(content)));
  }
  if (type == "ByteFallback") return Ptr(new ByteFallbackDecoder());
  if (type == "Fuse") return Ptr(new FuseDecoder());
  if (type == "Strip") {
    JAMBA_ASSIGN_OR_RETURN(std::string content, json_fields::GetString(config, "content", path));
    const std::u32string c = IsValidUtf8(content) ? Utf8ToCodePoints(content) : U"";
    if (c.size() != 1) {
      return FieldError(absl::StrCat(path, ".content"), "must be exactly one character");
    }
    JAMBA_ASSIGN_OR_RETURN(int64_t start, json_fields::GetIntOr(config, "start", path, 0));
    JAMBA_ASSIGN_OR_RETURN(int64_t stop, json_fields::GetIntOr(config, "stop", path, 0));
    if (start < 0 || stop < 0) return FieldError(path, "start/stop must be >= 0");
    return Ptr(new StripDecoder(c[0], static_cast<size_t>(start), static_cast<size_t>(stop)));
  }
  return FieldError(absl::StrCat(path, ".type"),
                    absl::StrCat("has unsupported decoder type '", type, "'"));
}

}  // namespace jamba
