// Parsing of untrusted JSON files of a checkpoint (config.json, the safetensors header,
// model.safetensors.index.json). nlohmann::json alone accepts inputs a checkpoint must not
// contain: a duplicate key silently keeps the later value (so two readers of the same file can
// disagree about a tensor's offsets), and arbitrarily deep nesting, which later recurses once
// per level when the value is copied or printed (a stack overflow on hostile input).
#ifndef JAMBA_ENGINE_CONFIG_STRICT_JSON_H_
#define JAMBA_ENGINE_CONFIG_STRICT_JSON_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace jamba {

// Real checkpoint files nest 3 levels deep at most.
inline constexpr int kMaxJsonDepth = 64;

// Parses [begin, end) as one JSON value (surrounding whitespace allowed). Never throws.
// Errors are InvalidArgument with a short, printable-ASCII message that does not name the
// source, so callers prefix their file name:
//   "malformed JSON at byte 30: syntax error while parsing value - ... at line 2, column 8"
//   "duplicate key 'dtype' (in 'model.embed_tokens.weight')"
//   "JSON nested deeper than 64 levels"
absl::StatusOr<nlohmann::json> ParseStrictJson(const char* begin, const char* end,
                                               int max_depth = kMaxJsonDepth);
absl::StatusOr<nlohmann::json> ParseStrictJson(const std::string& text,
                                               int max_depth = kMaxJsonDepth);

// `name` quoted for an error message, shortened to at most its first `max_chars` bytes (cut at a
// UTF-8 character boundary): keys of a hostile file can be megabytes long. `name` is expected to
// be valid UTF-8 (strings from ParseStrictJson are).
std::string QuoteForError(const std::string& name, size_t max_chars = 200);

}  // namespace jamba

#endif  // JAMBA_ENGINE_CONFIG_STRICT_JSON_H_
