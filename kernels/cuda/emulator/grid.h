// The CUDA emulator's execution model: a launch runs its blocks one after another; inside a
// block every CUDA thread is a fiber with its own stack, and fibers switch only where CUDA
// threads synchronise (__syncthreads, warp collectives, exit). That is one of the schedules
// a GPU may pick, so a kernel that is correct on a GPU computes the same result here; the
// emulator stops the process with a message where a kernel breaks the model's rules (a
// barrier some threads never reach, a warp collective whose lanes disagree on the mask, a
// shuffle from a lane outside the mask).
//
// JAMBA_CUDA_EMULATOR_ORDER=reverse runs each block's ready threads in descending order
// instead: a kernel that reads what another thread wrote without a barrier in between gives
// different results in the two orders.
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_GRID_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_GRID_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>

namespace jamba::cuda_emu {

// The indices of the emulated thread that runs now.
struct ThreadContext {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  int lane;  // linear thread index in the block % 32
  int warp;  // linear thread index in the block / 32
};

// Set by the scheduler for the fiber it switches to; null outside kernels.
extern thread_local const ThreadContext* t_thread;

// Checks the launch configuration (the errors a GPU gives at launch), then queues the grid
// (emulated_device.h: it runs at the host's next synchronisation), where every thread of the
// grid `config` describes runs `thread`. `kernel` identifies the kernel for its
// cudaFuncSetAttribute limits. Grids run one at a time process-wide (one emulated device), as
// do the static __shared__ variables they use.
cudaError_t LaunchGrid(const cudaLaunchConfig_t& config, const void* kernel,
                       std::function<void()> thread);

// __syncthreads: waits until every thread of the block that has not exited arrives; then
// the block's threads run on from the first in order.
void SyncThreads();
// A warp collective over the lanes of `mask` (the caller's lane included) that have not
// exited: waits until all of them contribute their `value`, copies every lane's value to
// lanes[0..31] (unless `lanes` is null) and returns the mask of the lanes that contributed
// (entries of other lanes are unspecified). Lanes meeting in one collective must name the same mask
// and `kind` (the instruction, with its mode: a shuffle meeting a vote is undefined on a GPU, and
// stops the process here); lanes that never arrive show up as a deadlock.
//
// `hook`, when given (the same by every lane, as `kind` is), runs once when the collective
// completes, before any lane goes on, with every lane's value and the mask of the lanes that
// gave one. It runs on the fiber of the lane that completed the collective while the others
// wait inside it, so it may read and write memory the values point to, the other lanes' own
// objects included (warp-wide operations such as wmma's mma_sync are built this way).
using WarpHook = void (*)(const uint64_t lanes[32], unsigned arrived);
unsigned WarpGather(unsigned mask, uint32_t kind, uint64_t value, uint64_t lanes[32],
                    WarpHook hook = nullptr);
inline constexpr uint32_t kSyncWarpKind = 1;
// __syncwarp(mask).
void SyncWarp(unsigned mask);
// The block's dynamic shared memory: the launch's dynamicSmemBytes, 16-byte aligned, filled
// with 0xff bytes at the start of each block, followed by a guard page.
void* DynamicSharedMemory();
// Stops the process with `message` and the running thread's indices (a kernel bug).
[[noreturn]] void KernelFault(const char* message);

}  // namespace jamba::cuda_emu

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_GRID_H_
