#include "engine/config/strict_json.h"

#include <exception>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace jamba {
namespace {

using Json = nlohmann::json;

// Thrown from the parser callback to stop parsing; never leaves ParseStrictJson.
struct Rejected {
  std::string message;
};

// nlohmann's message without its "[json.exception.parse_error.101] " prefix, and shortened:
// it quotes the offending token, which in a hostile file can be a string of megabytes.
std::string JsonErrorText(const char* what) {
  constexpr size_t kMaxChars = 300;
  std::string text = what;
  if (!text.empty() && text[0] == '[') {
    size_t end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  // The quoted token is raw input: escape what is not printable ASCII, so that messages stay
  // valid UTF-8 (they end up in RPC statuses and JSON logs).
  std::string escaped;
  for (unsigned char ch : text) {
    if (escaped.size() >= kMaxChars) {
      absl::StrAppend(&escaped, "... (", text.size(), " bytes)");
      break;
    }
    if (ch >= 0x20 && ch < 0x7f) {
      escaped.push_back(static_cast<char>(ch));
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      escaped += {'\\', 'x', kHex[ch >> 4], kHex[ch & 15]};
    }
  }
  return escaped;
}

// Tracks the open containers while nlohmann parses, to see duplicate keys and excessive depth
// as they are read (before a deep value is ever copied).
class Checker {
 public:
  explicit Checker(int max_depth) : max_depth_(max_depth) {}

  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (static_cast<int>(frames_.size()) >= max_depth_) {
          throw Rejected{absl::StrCat("JSON nested deeper than ", max_depth_, " levels")};
        }
        frames_.emplace_back();
        frames_.back().is_object = event == Json::parse_event_t::object_start;
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case Json::parse_event_t::key: {
        if (frames_.empty() || !parsed.is_string()) break;  // cannot happen with nlohmann
        Frame& top = frames_.back();
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!top.keys.insert(key).second) throw Rejected{DuplicateMessage(key)};
        top.current_key = key;
        break;
      }
      case Json::parse_event_t::value:
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object = false;
    std::unordered_set<std::string> keys;
    std::string current_key;  // of the value being parsed, for objects
  };

  std::string DuplicateMessage(const std::string& key) const {
    std::string path;
    // The innermost frame holds the duplicate; its ancestors' keys locate it.
    for (size_t i = 0; i + 1 < frames_.size(); ++i) {
      if (!path.empty()) path += " / ";
      path += frames_[i].is_object ? QuoteForError(frames_[i].current_key, 100) : "[...]";
    }
    std::string message = absl::StrCat("duplicate key ", QuoteForError(key));
    if (!path.empty()) absl::StrAppend(&message, " (in ", path, ")");
    return message;
  }

  int max_depth_;
  std::vector<Frame> frames_;
};

}  // namespace

absl::StatusOr<nlohmann::json> ParseStrictJson(const char* begin, const char* end, int max_depth) {
  Checker checker(max_depth);
  try {
    return Json::parse(begin, end, [&checker](int depth, Json::parse_event_t event, Json& parsed) {
      return checker(depth, event, parsed);
    });
  } catch (const Rejected& r) {
    return absl::InvalidArgumentError(r.message);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed JSON at byte ", e.byte, ": ", JsonErrorText(e.what())));
  } catch (const std::exception& e) {  // e.g. out_of_range for a number that overflows
    return absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", JsonErrorText(e.what())));
  }
}

absl::StatusOr<nlohmann::json> ParseStrictJson(const std::string& text, int max_depth) {
  return ParseStrictJson(text.data(), text.data() + text.size(), max_depth);
}

std::string QuoteForError(const std::string& name, size_t max_chars) {
  if (name.size() <= max_chars) return absl::StrCat("'", name, "'");
  // Cut at a character boundary: never inside a UTF-8 sequence.
  size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
  return absl::StrCat("'", name.substr(0, cut), "...' (", name.size(), " bytes)");
}

}  // namespace jamba
