// Choosing a compute backend by name, for every tool and server's --device flag: "cpu",
// "cuda" (device 0) or "cuda:N". Linked through jamba_backends, which includes the CUDA
// backend when the build has it (JAMBA_ENABLE_CUDA).
#ifndef JAMBA_KERNELS_BACKEND_FACTORY_H_
#define JAMBA_KERNELS_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "kernels/backend.h"

namespace jamba {

// InvalidArgument for a malformed spec; Unavailable for "cuda" in a build without CUDA or on
// a machine without a usable GPU; the CUDA backend's errors otherwise.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(absl::string_view spec,
                                                       const BackendOptions& options = {});

// Parses a device name without creating anything (for --check-config and tools that need the
// GPU index): -1 for "cpu", N for "cuda[:N]"; InvalidArgument naming the name otherwise.
// Whether the device exists is CreateBackend's to say. Inline, so that tools which only pass
// device names on (jambactl cluster up) check them without linking any backend.
inline absl::StatusOr<int> ParseDeviceName(absl::string_view spec) {
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
inline absl::Status CheckDeviceName(absl::string_view spec) {
  return ParseDeviceName(spec).status();
}

// "f32" or "bf16" (a --matmul-precision flag's value); InvalidArgument naming it otherwise.
inline absl::StatusOr<MatMulPrecision> ParseMatMulPrecision(absl::string_view name) {
  if (name == "f32") return MatMulPrecision::kF32;
  if (name == "bf16") return MatMulPrecision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown matmul precision '", name, "': expected f32 or bf16"));
}

// The help text of a --matmul-precision flag.
inline constexpr char kMatMulPrecisionFlagHelp[] =
    "activations of products with bf16/int8 weights: f32 (exact) or bf16 (rounded: one\n"
    "tensor-core pass on a GPU, ~3x faster prefill products; what PyTorch does in bf16)";

// Whether this build includes the CUDA backend.
bool BuiltWithCuda();

// The help text of a --device flag.
inline constexpr char kDeviceFlagHelp[] = "compute device: cpu, cuda (GPU 0) or cuda:N";

}  // namespace jamba

#endif  // JAMBA_KERNELS_BACKEND_FACTORY_H_
