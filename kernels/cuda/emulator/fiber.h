// Stackful fibers for the CUDA emulator (x86-64 System V): a context is a saved stack pointer;
// a switch saves the callee-saved registers and the SSE / x87 control words on the running
// stack and restores another context's. Nothing here knows about CUDA.
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_FIBER_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_FIBER_H_

#include <cstddef>
#include <cstdint>

namespace jamba::cuda_emu {

// Saves the running context's stack pointer in *save and resumes the context saved as `load`.
// Returns when some context switches back to the saved one.
extern "C" void jamba_cuda_emu_switch(void** save, void* load);

// A context that, when first switched to, calls entry() on the stack whose highest address is
// `top` (16-byte aligned). entry() must never return: it ends by switching away for good.
void* NewContext(void* top, void (*entry)());

// `count` stacks of kStackBytes each, every one with a guard page below it (an overflow
// faults instead of writing into its neighbour). Pages are committed as they are touched.
class StackPool {
 public:
  static constexpr size_t kStackBytes = 256 * 1024;
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();

  // Makes at least `count` stacks available (keeps the current ones when there are enough).
  void Reserve(int count);
  // The highest address of stack i (< the reserved count), 16-byte aligned.
  void* Top(int i) const;
  // Whether `address` lies in one of the stacks or their guard pages.
  bool Contains(const void* address) const;

 private:
  uint8_t* base_ = nullptr;
  size_t slot_bytes_ = 0;  // guard page + stack
  int count_ = 0;
};

}  // namespace jamba::cuda_emu

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_FIBER_H_
