#include "kernels/cpu_threads.h"

#include <omp.h>

#include <atomic>

namespace jamba {
namespace {

std::atomic<int> g_threads{0};

}  // namespace

void SetCpuThreads(int n) {
  if (n < 1) return;
  g_threads.store(n, std::memory_order_relaxed);
  omp_set_num_threads(n);
}

void AdoptCpuThreads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  // Only when it differs: omp_set_num_threads allocates the thread's ICV copy the first time.
  if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
}

int CpuThreads() { return g_threads.load(std::memory_order_relaxed); }

}  // namespace jamba
