// The CUDA emulator's cuda_runtime.h: the runtime API, the device-side built-ins kernels use
// (kernels/cuda/emulator/device_model.h), and the typed launch templates of the toolkit's
// header.
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_CUDA_RUNTIME_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_CUDA_RUNTIME_H_

#include <cuda_runtime_api.h>

#include <memory>
#include <tuple>
#include <utility>

#include "kernels/cuda/emulator/device_model.h"
#include "kernels/cuda/emulator/grid.h"

// The toolkit's typed launch: the arguments are converted to the kernel's parameter types
// (as with <<<...>>>) and kept with the queued grid; when it runs, every thread of the grid
// runs the kernel on its own copy of them.
// Returns (and records for cudaGetLastError) cudaErrorInvalidConfiguration for a bad grid or
// block, cudaErrorInvalidValue for dynamic shared memory over the kernel's limit, and
// cudaErrorInvalidResourceHandle for a stream that is not live, as the device would.
template <typename... ExpTypes, typename... ActTypes>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(ExpTypes...),
                               ActTypes&&... args) {
  auto bound = std::make_shared<const std::tuple<ExpTypes...>>(std::forward<ActTypes>(args)...);
  return ::jamba::cuda_emu::LaunchGrid(*config, reinterpret_cast<const void*>(kernel),
                                       [kernel, bound] { std::apply(kernel, *bound); });
}

template <typename T>
cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_CUDA_RUNTIME_H_
