// The machine's sustainable memory read bandwidth, measured the way a decode step uses memory:
// all threads streaming through a buffer far larger than the caches, summing with AVX2.
#ifndef JAMBA_BENCH_MEMORY_BANDWIDTH_H_
#define JAMBA_BENCH_MEMORY_BANDWIDTH_H_

#include <cstdint>

namespace jamba {

// Best of `repeats` full passes over a `bytes` buffer, in bytes per second.
double MeasureReadBandwidth(int64_t bytes, int repeats);

}  // namespace jamba

#endif  // JAMBA_BENCH_MEMORY_BANDWIDTH_H_
