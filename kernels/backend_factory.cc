#include "kernels/backend_factory.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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
                                                       const BackendOptions& options) {
  absl::StatusOr<int> device = ParseDeviceName(spec);
  if (!device.ok()) return device.status();
  if (*device < 0) return CreateCpuBackend(options);
#ifdef JAMBA_HAS_CUDA
  return CreateCudaBackend(*device, options.matmul_precision);
#else
  return absl::UnavailableError(
      absl::StrCat("device '", spec,
                   "': this build has no CUDA backend (configure with -DJAMBA_ENABLE_CUDA=ON)"));
#endif
}

}  // namespace jamba
