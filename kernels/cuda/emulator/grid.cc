#include "kernels/cuda/emulator/grid.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/emulator/emulated_device.h"
#include "kernels/cuda/emulator/fiber.h"

// The built-in index variables of device_model.h.
thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace jamba::cuda_emu {

thread_local const ThreadContext* t_thread = nullptr;

namespace {

constexpr unsigned kMaxBlockThreads = 1024;

enum class State : uint8_t { kReady, kAtBarrier, kAtWarp, kDone };

struct Fiber {
  ThreadContext ctx;
  void* sp = nullptr;
  State state = State::kReady;  // set through Runner::SetState, which keeps ready_ in step
  // Where the warp collective it waits at puts every lane's value (null: nowhere), and the
  // lanes that gave one.
  uint64_t* gathered = nullptr;
  unsigned gathered_mask = 0;
};

// A warp collective some lanes have reached: its mask and kind, and the lanes that arrived.
// It completes when every lane of the mask that has not exited has arrived.
struct WarpGroup {
  unsigned mask;
  uint32_t kind;
  unsigned arrived;
  WarpHook hook;
};

struct Warp {
  uint64_t values[32];  // each lane's contribution to the collective it waits at
  std::vector<WarpGroup> pending;
  int lanes = 0;      // threads of the block in this warp
  unsigned gone = 0;  // lanes that have exited, or that the block does not have
};

bool ReverseOrder() {
  static const bool reverse = [] {
    const char* v = std::getenv("JAMBA_CUDA_EMULATOR_ORDER");
    return v != nullptr && std::strcmp(v, "reverse") == 0;
  }();
  return reverse;
}

// Runs the blocks of one launch at a time. One instance, used under g_launch_mutex.
class Runner {
 public:
  Runner() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    shared_bytes_ = (kOptinSharedBytes + page - 1) / page * page;
    void* p = mmap(nullptr, shared_bytes_ + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(static_cast<uint8_t*>(p) + shared_bytes_, page, PROT_NONE)) {
      std::fprintf(stderr, "CUDA emulator: cannot map shared memory\n");
      std::abort();
    }
    shared_base_ = static_cast<uint8_t*>(p);
    shared_ = shared_base_ + shared_bytes_;
  }

  void Launch(const cudaLaunchConfig_t& config, const std::function<void()>& thread) {
    thread_ = &thread;
    const dim3 b = config.blockDim, g = config.gridDim;
    const int n = static_cast<int>(b.x * b.y * b.z);
    stacks_.Reserve(n);
    fibers_.resize(n);
    ready_.assign((n + 63) / 64, 0);
    warps_.resize((n + 31) / 32);
    for (size_t w = 0; w < warps_.size(); ++w) {
      warps_[w].lanes = std::min(32, n - static_cast<int>(w) * 32);
    }
    for (int i = 0; i < n; ++i) {
      ThreadContext& c = fibers_[i].ctx;
      c.thread_idx = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
      c.block_dim = b;
      c.grid_dim = g;
      c.lane = i % 32;
      c.warp = i / 32;
    }
    shared_ = shared_base_ + shared_bytes_ - (config.dynamicSmemBytes + 15) / 16 * 16;
    shared_used_ = config.dynamicSmemBytes;
    const uint64_t blocks = uint64_t{g.x} * g.y * g.z;
    for (uint64_t k = 0; k < blocks; ++k) {
      const uint64_t i = ReverseOrder() ? blocks - 1 - k : k;
      RunBlock(uint3{static_cast<unsigned>(i % g.x), static_cast<unsigned>((i / g.x) % g.y),
                     static_cast<unsigned>(i / (uint64_t{g.x} * g.y))});
    }
  }

  void SyncThreads() {
    Fiber& me = fibers_[current_];
    SetState(current_, State::kAtBarrier);
    if (++at_barrier_ == live_) {
      ReleaseBarrier();
      YieldInOrder();
      return;
    }
    Suspend();
  }

  unsigned WarpGather(unsigned mask, uint32_t kind, uint64_t value, uint64_t lanes[32],
                      WarpHook hook) {
    Fiber& me = fibers_[current_];
    const int lane = me.ctx.lane;
    Warp& w = warps_[me.ctx.warp];
    if (((mask >> lane) & 1u) == 0) KernelFault("a warp collective's mask leaves out its own lane");
    size_t g = 0;
    while (g < w.pending.size() && w.pending[g].mask != mask) ++g;
    if (g == w.pending.size()) {
      w.pending.push_back(WarpGroup{mask, kind, 0, hook});
    } else if (w.pending[g].kind != kind || w.pending[g].hook != hook) {
      KernelFault("lanes of a warp meet in different collectives with the same mask");
    }
    w.values[lane] = value;
    w.pending[g].arrived |= 1u << lane;
    me.gathered = lanes;
    if (TryComplete(me.ctx.warp, g)) {
      YieldInOrder();
    } else {
      SetState(current_, State::kAtWarp);
      Suspend();
    }
    return me.gathered_mask;
  }

  void* SharedMemory() const { return shared_; }

  bool InStacks(const void* address) const { return stacks_.Contains(address); }

 private:
  void RunBlock(uint3 block) {
    const int n = static_cast<int>(fibers_.size());
    for (int i = 0; i < n; ++i) {
      fibers_[i].ctx.block_idx = block;
      SetState(i, State::kReady);
      fibers_[i].sp = NewContext(stacks_.Top(i), &FiberMain);
    }
    for (Warp& w : warps_) {
      w.pending.clear();
      w.gone = w.lanes == 32 ? 0u : ~((1u << w.lanes) - 1u);
    }
    std::memset(shared_, 0xff, shared_used_);
    live_ = n;
    at_barrier_ = 0;
    Enter(ReverseOrder() ? n - 1 : 0);
    jamba_cuda_emu_switch(&launcher_sp_, fibers_[current_].sp);
    t_thread = nullptr;
  }

  static void FiberMain();

  void SetState(int i, State state) {
    fibers_[i].state = state;
    const uint64_t bit = uint64_t{1} << (i % 64);
    if (state == State::kReady) {
      ready_[i / 64] |= bit;
    } else {
      ready_[i / 64] &= ~bit;
    }
  }

  // The lowest ready thread at or above `from`, or -1.
  int ReadyAtOrAbove(int from) const {
    const int n = static_cast<int>(fibers_.size());
    if (from >= n) return -1;
    int word = from / 64;
    uint64_t bits = ready_[word] & (~uint64_t{0} << (from % 64));
    while (bits == 0) {
      if (++word == static_cast<int>(ready_.size())) return -1;
      bits = ready_[word];
    }
    return word * 64 + __builtin_ctzll(bits);
  }

  // The highest ready thread at or below `from`, or -1.
  int ReadyAtOrBelow(int from) const {
    if (from < 0) return -1;
    int word = from / 64;
    const int shift = 63 - from % 64;
    uint64_t bits = (ready_[word] << shift) >> shift;
    while (bits == 0) {
      if (--word < 0) return -1;
      bits = ready_[word];
    }
    return word * 64 + 63 - __builtin_clzll(bits);
  }

  // The first ready thread in the block's order, or -1 when none is ready.
  int FirstReady() const {
    return ReverseOrder() ? ReadyAtOrBelow(static_cast<int>(fibers_.size()) - 1)
                          : ReadyAtOrAbove(0);
  }

  // After a release (the current thread among the released, all ready): the block's threads
  // run again from the first in order, as if they all left the barrier together. Without
  // this, the releasing thread would run on first and the two orders would share pairs of
  // threads that always run in the same order, hiding races between them.
  void YieldInOrder() {
    const int first = FirstReady();
    if (first != current_) SwitchTo(first, &fibers_[current_].sp);
  }

  // Completes group g of warp `warp` if every lane of its mask that has not exited arrived:
  // each of them gets the values and is ready. Returns whether it completed.
  bool TryComplete(int warp, size_t g) {
    Warp& w = warps_[warp];
    const WarpGroup group = w.pending[g];
    if (group.arrived != (group.mask & ~w.gone)) return false;
    if (group.hook != nullptr) group.hook(w.values, group.arrived);
    for (int i = 0; i < 32; ++i) {
      if (((group.arrived >> i) & 1u) == 0) continue;
      Fiber& f = fibers_[warp * 32 + i];
      // The lanes wait inside WarpGather (or run it now), so their arrays are there.
      if (f.gathered != nullptr) std::memcpy(f.gathered, w.values, sizeof(w.values));
      f.gathered_mask = group.arrived;
      SetState(warp * 32 + i, State::kReady);
    }
    w.pending.erase(w.pending.begin() + static_cast<std::ptrdiff_t>(g));
    return true;
  }

  // The thread that runs after the current one stops: the next ready one in the block's order
  // (cyclically), or -1 when none is ready.
  int NextReady() const {
    const int n = static_cast<int>(fibers_.size());
    if (ReverseOrder()) {
      const int below = ReadyAtOrBelow(current_ - 1);
      return below >= 0 ? below : ReadyAtOrBelow(n - 1);
    }
    const int above = ReadyAtOrAbove(current_ + 1);
    return above >= 0 ? above : ReadyAtOrAbove(0);
  }

  // Makes fiber i the running thread (its indices in the built-in variables).
  void Enter(int i) {
    current_ = i;
    const ThreadContext& c = fibers_[i].ctx;
    t_thread = &c;
    threadIdx = c.thread_idx;
    blockIdx = c.block_idx;
    blockDim = c.block_dim;
    gridDim = c.grid_dim;
  }

  void SwitchTo(int next, void** save) {
    Enter(next);
    jamba_cuda_emu_switch(save, fibers_[next].sp);
  }

  // The current thread waits (its state says for what); runs others until it is released.
  void Suspend() {
    const int next = NextReady();
    if (next < 0) Deadlock();
    SwitchTo(next, &fibers_[current_].sp);
    // Resumed: whoever switched here has set current_ and t_thread back to this thread.
  }

  void Exit() {
    Fiber& me = fibers_[current_];
    SetState(current_, State::kDone);
    --live_;
    // Collectives wait only for lanes that have not exited (the Programming Guide's
    // "non-exited threads in mask"): one this lane held up may complete now.
    Warp& w = warps_[me.ctx.warp];
    w.gone |= 1u << me.ctx.lane;
    for (size_t g = 0; g < w.pending.size();) {
      if (((w.pending[g].mask >> me.ctx.lane) & 1u) == 0 || !TryComplete(me.ctx.warp, g)) ++g;
    }
    if (at_barrier_ > 0 && at_barrier_ == live_) ReleaseBarrier();
    const int next = FirstReady();
    void* abandoned = nullptr;
    if (next >= 0) SwitchTo(next, &abandoned);
    if (live_ > 0) Deadlock();
    jamba_cuda_emu_switch(&abandoned, launcher_sp_);
  }

  void ReleaseBarrier() {
    for (int i = 0; i < static_cast<int>(fibers_.size()); ++i) {
      if (fibers_[i].state == State::kAtBarrier) SetState(i, State::kReady);
    }
    at_barrier_ = 0;
  }

  [[noreturn]] void Deadlock() {
    int at_barrier = 0, at_warp = 0, done = 0;
    for (const Fiber& f : fibers_) {
      at_barrier += f.state == State::kAtBarrier;
      at_warp += f.state == State::kAtWarp;
      done += f.state == State::kDone;
    }
    std::string waits;
    for (size_t w = 0; w < warps_.size(); ++w) {
      for (const WarpGroup& p : warps_[w].pending) {
        char line[96];
        std::snprintf(line, sizeof(line), "; warp %zu: lanes %08x of a collective over %08x", w,
                      p.arrived, p.mask);
        waits += line;
      }
    }
    std::string message = "deadlock: " + std::to_string(at_barrier) +
                          " threads at __syncthreads, " + std::to_string(at_warp) +
                          " at warp collectives, " + std::to_string(done) + " exited" + waits;
    KernelFault(message.c_str());
  }

  StackPool stacks_;
  std::vector<Fiber> fibers_;
  std::vector<uint64_t> ready_;  // bit i: fibers_[i] is ready
  std::vector<Warp> warps_;
  const std::function<void()>* thread_ = nullptr;  // the kernel with its arguments
  void* launcher_sp_ = nullptr;
  int current_ = 0;
  int live_ = 0;
  int at_barrier_ = 0;
  uint8_t* shared_base_ = nullptr;
  size_t shared_bytes_ = 0;  // mapped bytes below the guard page
  uint8_t* shared_ = nullptr;
  size_t shared_used_ = 0;
};

std::mutex g_launch_mutex;
Runner* g_runner = nullptr;  // created on the first launch, under g_launch_mutex

void Runner::FiberMain() {
  (*g_runner->thread_)();
  g_runner->Exit();
}

// A fault inside a kernel (an access past a device allocation or the dynamic shared memory,
// a stack overflow) names the emulated thread, then takes the default action.
struct sigaction g_previous_segv;

void OnSegv(int sig, siginfo_t* info, void*) {
  const ThreadContext* t = t_thread;
  if (t != nullptr) {
    char message[256];
    const bool stack = g_runner != nullptr && g_runner->InStacks(info->si_addr);
    const int len = std::snprintf(
        message, sizeof(message),
        "CUDA emulator: %s at %p in block (%u, %u, %u), thread (%u, %u, %u)\n",
        stack ? "stack overflow" : "invalid memory access", info->si_addr, t->block_idx.x,
        t->block_idx.y, t->block_idx.z, t->thread_idx.x, t->thread_idx.y, t->thread_idx.z);
    if (len > 0) (void)!write(STDERR_FILENO, message, static_cast<size_t>(len));
  }
  sigaction(SIGSEGV, &g_previous_segv, nullptr);
  // A fault repeats into the previous action on return; a signal sent with kill() or raise()
  // does not, so it is passed on.
  if (info->si_code <= 0) raise(sig);
}

void InstallFaultHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_sigaction = &OnSegv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
  });
  // A stack overflow leaves no stack to run the handler on: each launching thread gets an
  // alternate one.
  // A thread that has one already (absl's failure handler installs one) keeps it.
  thread_local bool has_alt_stack = false;
  if (!has_alt_stack) {
    stack_t old = {};
    if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE) != 0) {
      stack_t ss = {};
      ss.ss_size = 64 * 1024;
      ss.ss_sp = std::malloc(ss.ss_size);  // lives as long as the thread may fault
      if (ss.ss_sp != nullptr) sigaltstack(&ss, nullptr);
    }
    has_alt_stack = true;
  }
}

bool DimsValid(const dim3& b, const dim3& g) {
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  return threads >= 1 && threads <= kMaxBlockThreads && b.x <= 1024 && b.y <= 1024 && b.z <= 64 &&
         g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x <= 0x7fffffffu && g.y <= 65535 && g.z <= 65535;
}

}  // namespace

cudaError_t LaunchGrid(const cudaLaunchConfig_t& config, const void* kernel,
                       std::function<void()> thread) {
  if (t_thread != nullptr) KernelFault("a kernel launches a kernel (not modelled)");
  if (config.numAttrs != 0) return Record(cudaErrorInvalidValue);
  if (!DimsValid(config.blockDim, config.gridDim)) return Record(cudaErrorInvalidConfiguration);
  if (config.dynamicSmemBytes > KernelSharedLimit(kernel)) {
    return Record(cudaErrorInvalidValue);
  }
  if (!StreamValid(config.stream)) return Record(cudaErrorInvalidResourceHandle);
  Enqueue([config, thread = std::move(thread)] {
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    if (g_runner == nullptr) g_runner = new Runner();  // lives for the process
    InstallFaultHandler();
    g_runner->Launch(config, thread);
  });
  return cudaSuccess;
}

namespace {
// The runner of the kernel that calls a device built-in (only kernels may).
Runner& Active(const char* what) {
  if (t_thread == nullptr || g_runner == nullptr) {
    std::fprintf(stderr, "CUDA emulator: %s outside a kernel\n", what);
    std::abort();
  }
  return *g_runner;
}
}  // namespace

void SyncThreads() { Active("__syncthreads").SyncThreads(); }

unsigned WarpGather(unsigned mask, uint32_t kind, uint64_t value, uint64_t lanes[32],
                    WarpHook hook) {
  return Active("a warp collective").WarpGather(mask, kind, value, lanes, hook);
}

void SyncWarp(unsigned mask) {
  uint64_t lanes[32];
  Active("__syncwarp").WarpGather(mask, kSyncWarpKind, 0, lanes, nullptr);
}

void* DynamicSharedMemory() { return Active("dynamic shared memory").SharedMemory(); }

void KernelFault(const char* message) {
  const ThreadContext* t = t_thread;
  if (t != nullptr) {
    std::fprintf(stderr, "CUDA emulator: %s (block (%u, %u, %u), thread (%u, %u, %u))\n", message,
                 t->block_idx.x, t->block_idx.y, t->block_idx.z, t->thread_idx.x, t->thread_idx.y,
                 t->thread_idx.z);
  } else {
    std::fprintf(stderr, "CUDA emulator: %s\n", message);
  }
  std::abort();
}

}  // namespace jamba::cuda_emu
