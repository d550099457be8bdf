#include "bench/memory_bandwidth.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace jamba {

double MeasureReadBandwidth(int64_t bytes, int repeats) {
  const int64_t n = bytes / sizeof(float) / 32 * 32;  // whole 4-vector groups
  std::unique_ptr<float, decltype(&std::free)> buf(
      static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))), &std::free);
  float* p = buf.get();
  // First touch from the threads that will read, as the weights are.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 1024) {
    std::memset(p + i, 0, std::min<int64_t>(1024, n - i) * sizeof(float));
  }
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
      }
      __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      float lanes[8];
      _mm256_storeu_ps(lanes, s);
      for (float l : lanes) total += l;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, static_cast<double>(n * sizeof(float)) / secs);
  }
  return best;
}

}  // namespace jamba
