// Timing of the single-process engine that both benchmarks report: one prefill of `batch`
// random prompts, then decode steps of the whole batch (random next tokens: the cost of a
// step does not depend on which tokens are fed).
#ifndef JAMBA_BENCH_ENGINE_TIMING_H_
#define JAMBA_BENCH_ENGINE_TIMING_H_

#include <random>

#include "absl/status/statusor.h"
#include "engine/runtime/engine.h"

namespace jamba {

struct Throughput {
  double prefill_tok_s = 0, decode_tok_s = 0, decode_step_ms = 0;
};

// Adds `batch` sequences, prefills `prompt_len` tokens each in one step, runs 2 warm-up and
// `decode_steps` timed decode steps, and removes the sequences.
absl::StatusOr<Throughput> TimeEngineBatch(Engine* engine, int batch, int prompt_len,
                                           int decode_steps, std::mt19937* rng);

// Prefill of one sequence of `len` random tokens in steps of at most `chunk` tokens: tokens/s.
absl::StatusOr<double> TimePrefill(Engine* engine, int64_t len, int64_t chunk, std::mt19937* rng);

// Decode throughput (tokens/s over the batch) of `batch` sequences whose context already
// holds `context` tokens (prefilled untimed, `chunk` tokens per step), over `decode_steps`
// timed steps after 2 warm-up steps.
absl::StatusOr<double> TimeDecodeAtContext(Engine* engine, int batch, int64_t context,
                                           int decode_steps, int64_t chunk, std::mt19937* rng);

}  // namespace jamba

#endif  // JAMBA_BENCH_ENGINE_TIMING_H_
