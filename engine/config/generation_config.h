// generation_config.json: the defaults Hugging Face `generate` uses. We take from it the stop
// ids a model was tuned to end on, which config.json may not list (e.g. a chat model that stops
// on an end-of-turn token as well as on EOS), so jamba-run and the gateway stop where
// `generate` stops.
#ifndef JAMBA_ENGINE_CONFIG_GENERATION_CONFIG_H_
#define JAMBA_ENGINE_CONFIG_GENERATION_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "engine/config/model_config.h"

namespace jamba {

// Adds the ids of `eos_token_id` (an integer, a list of integers, or null/absent) to
// config->eos_token_ids, keeping order and skipping duplicates. Other fields are ignored.
// Errors (InvalidArgument, prefixed by `source`): malformed JSON, not an object, a non-integer
// id, an id outside [0, vocab_size).
absl::Status MergeGenerationConfig(const std::string& json_text, const std::string& source,
                                   ModelConfig* config);

}  // namespace jamba

#endif  // JAMBA_ENGINE_CONFIG_GENERATION_CONFIG_H_
