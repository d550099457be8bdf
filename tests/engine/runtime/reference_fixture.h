// Reads tests/fixtures/models/<name>/reference.safetensors: the outputs of Hugging Face
// transformers (fp32, no cache) for the tiny random checkpoint beside it, written by
// tools/make_model_fixtures.py.
#ifndef JAMBA_TESTS_ENGINE_RUNTIME_REFERENCE_FIXTURE_H_
#define JAMBA_TESTS_ENGINE_RUNTIME_REFERENCE_FIXTURE_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/checkpoint/safetensors.h"

namespace jamba {

inline std::string ModelFixtureDir(const std::string& name) {
  return std::string(JAMBA_TEST_DATA_DIR) + "/models/" + name;
}

struct ModelReference {
  std::vector<int32_t> prompt;       // [T]
  std::vector<float> logits;         // [T, V] full-sequence logits, f32 weights
  std::vector<float> logits_bf16w;   // [T, V] with the bf16-rounded weights
  std::vector<int32_t> greedy;       // [32] uncached greedy continuation
  std::vector<std::vector<int32_t>> batch_prompts;     // 5 prompts of lengths 1, 3, 7, 12, 25
  std::vector<std::vector<float>> batch_last_logits;   // [V] each, every prompt run alone
  int64_t vocab = 0;
};

template <typename T>
absl::StatusOr<std::vector<T>> ReadReferenceTensor(const SafetensorsFile& f,
                                                   const std::string& name, DType dtype) {
  const SafetensorsTensor* t = f.Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat(f.path(), ": no tensor ", name));
  if (t->dtype != dtype) return absl::InvalidArgumentError(name + ": unexpected dtype");
  std::vector<T> out(static_cast<size_t>(t->numel()));
  std::memcpy(out.data(), t->data, t->nbytes);
  return out;
}

inline absl::StatusOr<ModelReference> LoadModelReference(const std::string& name) {
  JAMBA_ASSIGN_OR_RETURN(auto f,
                         SafetensorsFile::Open(ModelFixtureDir(name) + "/reference.safetensors"));
  ModelReference r;
  JAMBA_ASSIGN_OR_RETURN(r.prompt, ReadReferenceTensor<int32_t>(*f, "prompt_ids", DType::kI32));
  JAMBA_ASSIGN_OR_RETURN(r.logits, ReadReferenceTensor<float>(*f, "logits", DType::kF32));
  JAMBA_ASSIGN_OR_RETURN(r.logits_bf16w,
                         ReadReferenceTensor<float>(*f, "logits_bf16w", DType::kF32));
  JAMBA_ASSIGN_OR_RETURN(r.greedy, ReadReferenceTensor<int32_t>(*f, "greedy_ids", DType::kI32));
  r.vocab = f->Find("logits")->shape[1];
  for (int i = 0; i < 5; ++i) {
    JAMBA_ASSIGN_OR_RETURN(auto p, ReadReferenceTensor<int32_t>(
                                       *f, absl::StrCat("batch_prompt_", i), DType::kI32));
    JAMBA_ASSIGN_OR_RETURN(auto l, ReadReferenceTensor<float>(
                                       *f, absl::StrCat("batch_last_logits_", i), DType::kF32));
    r.batch_prompts.push_back(std::move(p));
    r.batch_last_logits.push_back(std::move(l));
  }
  return r;
}

// Largest |a[i] - b[i]|; sizes must match.
inline double MaxAbsDiff(const float* a, const float* b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    if (d > m) m = d;
  }
  return m;
}

}  // namespace jamba

#endif  // JAMBA_TESTS_ENGINE_RUNTIME_REFERENCE_FIXTURE_H_
