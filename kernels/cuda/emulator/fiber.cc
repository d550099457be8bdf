#include "kernels/cuda/emulator/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

// Frame of a suspended context, from its saved stack pointer up: MXCSR (4 bytes) and the x87
// control word (2 bytes) in an 8-byte slot, r15, r14, r13, r12, rbx, rbp, return address.
asm(R"(
  .pushsection .text
  .globl jamba_cuda_emu_switch
  .type jamba_cuda_emu_switch, @function
jamba_cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size jamba_cuda_emu_switch, .-jamba_cuda_emu_switch
  .popsection
)");

namespace jamba::cuda_emu {

void* NewContext(void* top, void (*entry)()) {
  // The switch's frame, as if the context had called jamba_cuda_emu_switch from just before
  // entry(): "returning" lands in entry() with rsp = top - 8, the alignment of a function
  // entered by a call. The slot above holds a null return address for entry().
  auto* frame = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(top) - 72);
  uint32_t mxcsr = 0;
  uint16_t fpu_cw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_cw));
  std::memset(frame, 0, 72);
  std::memcpy(frame, &mxcsr, 4);
  std::memcpy(reinterpret_cast<uint8_t*>(frame) + 4, &fpu_cw, 2);
  frame[7] = reinterpret_cast<uint64_t>(entry);  // after 8 bytes of control words + 6 registers
  frame[8] = 0;
  return frame;
}

StackPool::~StackPool() {
  if (base_ != nullptr) munmap(base_, slot_bytes_ * count_);
}

void StackPool::Reserve(int count) {
  if (count <= count_) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t slot = page + kStackBytes;
  void* p = mmap(nullptr, slot * count, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "CUDA emulator: cannot map %d fiber stacks\n", count);
    std::abort();
  }
  auto* base = static_cast<uint8_t*>(p);
  for (int i = 0; i < count; ++i) {
    if (mprotect(base + i * slot, page, PROT_NONE) != 0) {
      std::fprintf(stderr, "CUDA emulator: cannot protect a fiber stack's guard page\n");
      std::abort();
    }
  }
  if (base_ != nullptr) munmap(base_, slot_bytes_ * count_);
  base_ = base;
  slot_bytes_ = slot;
  count_ = count;
}

void* StackPool::Top(int i) const { return base_ + (i + 1) * slot_bytes_; }

bool StackPool::Contains(const void* address) const {
  const auto* a = static_cast<const uint8_t*>(address);
  return base_ != nullptr && a >= base_ && a < base_ + slot_bytes_ * count_;
}

}  // namespace jamba::cuda_emu
