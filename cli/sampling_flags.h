// The sampling and stopping flags shared by jamba-run and `jambactl generate`, bound to a
// SamplingParams. Defaults are vLLM's (temperature 1, no top-k/top-p, 16 new tokens);
// `--temperature 0` is greedy.
#ifndef JAMBA_CLI_SAMPLING_FLAGS_H_
#define JAMBA_CLI_SAMPLING_FLAGS_H_

#include "cli/flag_parser.h"
#include "engine/sampling/sampling_params.h"

namespace jamba {

// `params` must outlive the parser.
void AddSamplingFlags(FlagParser* parser, SamplingParams* params);

}  // namespace jamba

#endif  // JAMBA_CLI_SAMPLING_FLAGS_H_
