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

absl::StatusOr<int> ParseDeviceName(absl::string_view spec) {
  if (spec == "cpu") return -1;
  int device = 0;
  absl::string_view rest = spec;
  const bool ok = absl::ConsumePrefix(&rest, "cuda") &&
                  (rest.empty() || (absl::ConsumePrefix(&rest, ":") &&
                                    absl::SimpleAtoi(rest, &device) && device >= 0));
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device '", spec, "': expected cpu, cuda or cuda:N"));
  }
  return device;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(absl::string_view spec,
                                                       const CpuBackendOptions& cpu) {
  absl::StatusOr<int> device = ParseDeviceName(spec);
  if (!device.ok()) return device.status();
  if (*device < 0) return CreateCpuBackend(cpu);
#ifdef JAMBA_HAS_CUDA
  return CreateCudaBackend(*device);
#else
  return absl::UnavailableError(
      absl::StrCat("device '", spec,
                   "': this build has no CUDA backend (configure with -DJAMBA_ENABLE_CUDA=ON)"));
#endif
}

}  // namespace jamba
