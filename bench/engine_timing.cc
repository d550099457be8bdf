#include "bench/engine_timing.h"

#include <chrono>
#include <vector>

#include "common/status_macros.h"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

absl::StatusOr<Throughput> TimeEngineBatch(Engine* engine, int batch, int prompt_len,
                                           int decode_steps, std::mt19937* rng) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(engine->vocab_size()) - 1);
  std::vector<SequenceId> seqs;
  std::vector<std::vector<int32_t>> prompts(batch);
  for (int b = 0; b < batch; ++b) {
    JAMBA_ASSIGN_OR_RETURN(SequenceId id, engine->AddSequence());
    seqs.push_back(id);
    for (int t = 0; t < prompt_len; ++t) prompts[b].push_back(token(*rng));
  }
  Throughput r;
  std::vector<StepItem> items;
  for (int b = 0; b < batch; ++b) {
    items.push_back(StepItem{seqs[b], absl::MakeConstSpan(prompts[b]), LogitsRows::kLast});
  }
  auto t0 = Clock::now();
  JAMBA_RETURN_IF_ERROR(engine->Step(items).status());
  r.prefill_tok_s = batch * prompt_len / Since(t0);

  std::vector<int32_t> next(batch);
  auto decode = [&]() -> absl::Status {
    items.clear();
    for (int b = 0; b < batch; ++b) {
      next[b] = token(*rng);
      items.push_back(StepItem{seqs[b], absl::MakeConstSpan(&next[b], 1), LogitsRows::kLast});
    }
    return engine->Step(items).status();
  };
  for (int i = 0; i < 2; ++i) JAMBA_RETURN_IF_ERROR(decode());  // warm-up
  t0 = Clock::now();
  for (int i = 0; i < decode_steps; ++i) JAMBA_RETURN_IF_ERROR(decode());
  const double secs = Since(t0);
  r.decode_step_ms = 1e3 * secs / decode_steps;
  r.decode_tok_s = batch * decode_steps / secs;
  for (SequenceId id : seqs) JAMBA_RETURN_IF_ERROR(engine->RemoveSequence(id));
  return r;
}

}  // namespace jamba
