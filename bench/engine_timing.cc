#include "bench/engine_timing.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/status_macros.h"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One decode step of every sequence in `seqs`, each fed a random token (the cost of a step
// does not depend on which tokens are fed).
absl::Status DecodeStep(Engine* engine, const std::vector<SequenceId>& seqs, std::mt19937* rng) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(engine->vocab_size()) - 1);
  std::vector<int32_t> next(seqs.size());
  std::vector<StepItem> items;
  items.reserve(seqs.size());
  for (size_t b = 0; b < seqs.size(); ++b) {
    next[b] = token(*rng);
    items.push_back(StepItem{seqs[b], absl::MakeConstSpan(&next[b], 1), LogitsRows::kLast});
  }
  return engine->Step(items).status();
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

  for (int i = 0; i < 2; ++i) JAMBA_RETURN_IF_ERROR(DecodeStep(engine, seqs, rng));  // warm-up
  t0 = Clock::now();
  for (int i = 0; i < decode_steps; ++i) JAMBA_RETURN_IF_ERROR(DecodeStep(engine, seqs, rng));
  const double secs = Since(t0);
  r.decode_step_ms = 1e3 * secs / decode_steps;
  r.decode_tok_s = batch * decode_steps / secs;
  for (SequenceId id : seqs) JAMBA_RETURN_IF_ERROR(engine->RemoveSequence(id));
  return r;
}

namespace {

// Feeds `len` random tokens to `seq` in steps of at most `chunk`.
absl::Status Prefill(Engine* engine, SequenceId seq, int64_t len, int64_t chunk,
                     std::mt19937* rng) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(engine->vocab_size()) - 1);
  std::vector<int32_t> ids;
  for (int64_t done = 0; done < len;) {
    const int64_t n = std::min(chunk, len - done);
    ids.resize(n);
    for (int32_t& id : ids) id = token(*rng);
    StepItem item{seq, absl::MakeConstSpan(ids), LogitsRows::kLast};
    JAMBA_RETURN_IF_ERROR(engine->Step(absl::MakeConstSpan(&item, 1)).status());
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> TimePrefill(Engine* engine, int64_t len, int64_t chunk, std::mt19937* rng) {
  JAMBA_ASSIGN_OR_RETURN(SequenceId seq, engine->AddSequence());
  const auto t0 = Clock::now();
  absl::Status s = Prefill(engine, seq, len, chunk, rng);
  const double secs = Since(t0);
  JAMBA_RETURN_IF_ERROR(engine->RemoveSequence(seq));
  JAMBA_RETURN_IF_ERROR(s);
  return len / secs;
}

absl::StatusOr<double> TimeDecodeAtContext(Engine* engine, int batch, int64_t context,
                                           int decode_steps, int64_t chunk, std::mt19937* rng) {
  std::vector<SequenceId> seqs;
  for (int b = 0; b < batch; ++b) {
    JAMBA_ASSIGN_OR_RETURN(SequenceId id, engine->AddSequence());
    seqs.push_back(id);
    JAMBA_RETURN_IF_ERROR(Prefill(engine, id, context, chunk, rng));
  }
  for (int i = 0; i < 2; ++i) JAMBA_RETURN_IF_ERROR(DecodeStep(engine, seqs, rng));
  const auto t0 = Clock::now();
  for (int i = 0; i < decode_steps; ++i) JAMBA_RETURN_IF_ERROR(DecodeStep(engine, seqs, rng));
  const double secs = Since(t0);
  for (SequenceId id : seqs) JAMBA_RETURN_IF_ERROR(engine->RemoveSequence(id));
  return batch * decode_steps / secs;
}

}  // namespace jamba
