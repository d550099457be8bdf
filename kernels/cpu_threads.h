// How many threads the CPU kernels of this process use. OpenMP keeps that count per thread:
// omp_set_num_threads affects only its caller, and a thread OpenMP did not create starts from
// OMP_NUM_THREADS or the core count. A server whose kernels run on threads it creates (a layer
// worker's compute thread, an expert worker's gRPC handlers, the gateway's scheduler in local
// mode) therefore sets the count once with SetCpuThreads, and each such thread calls
// AdoptCpuThreads before computing; without it `--threads 1` would still run every product on
// all cores.
#ifndef JAMBA_KERNELS_CPU_THREADS_H_
#define JAMBA_KERNELS_CPU_THREADS_H_

namespace jamba {

// n >= 1: the process's kernels use n threads (the caller at once, others on adopting it).
// n == 0: OpenMP's default (no change).
void SetCpuThreads(int n);
// Applies the count set by SetCpuThreads to the calling thread; nothing if none was set.
void AdoptCpuThreads();
// The count set, or 0.
int CpuThreads();

}  // namespace jamba

#endif  // JAMBA_KERNELS_CPU_THREADS_H_
