#include "kernels/backend_factory.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#ifdef JAMBA_HAS_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace jamba {

bool BuiltWithCuda() {
#ifdef JAMBA_HAS_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(absl::string_view spec,
                                                       const CpuBackendOptions& cpu) {
  if (spec == "cpu") return CreateCpuBackend(cpu);
  int device = 0;
  absl::string_view rest = spec;
  if (!absl::ConsumePrefix(&rest, "cuda")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device '", spec, "': expected cpu, cuda or cuda:N"));
  }
  if (!rest.empty()) {
    if (!absl::ConsumePrefix(&rest, ":") || !absl::SimpleAtoi(rest, &device) || device < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown device '", spec, "': expected cpu, cuda or cuda:N"));
    }
  }
#ifdef JAMBA_HAS_CUDA
  return CreateCudaBackend(device);
#else
  return absl::UnavailableError(
      absl::StrCat("device '", spec,
                   "': this build has no CUDA backend (configure with -DJAMBA_ENABLE_CUDA=ON)"));
#endif
}

}  // namespace jamba
