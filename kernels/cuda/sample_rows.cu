// SampleRows on the GPU: one block of kSampleThreads threads per row runs the algorithm of
// kernels/cuda/sample_rows_algo.h over the block primitives below. HostBlock in that header is
// the host model of DeviceBlock: keep the two in step (same element-to-thread assignment, same
// butterfly and scan, same order of warp results).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/sample_rows_algo.h"

namespace jamba::cuda {
namespace {

using sample_algo::kSampleThreads;
using sample_algo::kSearchThresholds;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarps = kSampleThreads / 32;
static_assert(kSampleThreads % 32 == 0 && kSampleThreads <= 1024, "whole warps, one block");

// Every member is called by all threads of the block and ends with __syncthreads, so the
// shared arrays may be reused by the next call.
class DeviceBlock {
 public:
  __device__ DeviceBlock(int32_t v, double* warp_sums, double* warp_tails,
                         unsigned long long* warp_max)
      : v_(v), warp_sums_(warp_sums), warp_tails_(warp_tails), warp_max_(warp_max) {}

  __device__ int32_t size() const { return v_; }

  template <class F>
  __device__ double Sum(F f) {
    double local = 0.0;
    for (int32_t i = threadIdx.x; i < v_; i += kSampleThreads) local += f(i);
    // Butterfly: lanes i and i ^ off add the same two values, so all lanes agree.
    for (int off = 16; off > 0; off >>= 1) local += __shfl_xor_sync(kFullMask, local, off);
    if (Lane() == 0) warp_sums_[Warp()] = local;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w) total += warp_sums_[w];
    __syncthreads();
    return total;
  }

  // Sum's order per threshold: each thread adds its elements' terms (0 below the threshold) in
  // the same sequence, then the same butterfly and warp order.
  template <class K, class W>
  __device__ void TailSums(K key, W w, const uint32_t* t, int n, double* out) {
    double acc[kSearchThresholds];
#pragma unroll
    for (int j = 0; j < kSearchThresholds; ++j) acc[j] = 0.0;
    for (int32_t i = threadIdx.x; i < v_; i += kSampleThreads) {
      const uint32_t k = key(i);
      const double wi = w(i);
#pragma unroll
      for (int j = 0; j < kSearchThresholds; ++j) {
        if (j < n) acc[j] += k >= t[j] ? wi : 0.0;
      }
    }
#pragma unroll
    for (int j = 0; j < kSearchThresholds; ++j) {
      for (int off = 16; off > 0; off >>= 1) acc[j] += __shfl_xor_sync(kFullMask, acc[j], off);
      if (Lane() == 0) warp_tails_[j * kWarps + Warp()] = acc[j];
    }
    __syncthreads();
    for (int j = 0; j < n; ++j) {
      double total = 0.0;
      for (int w2 = 0; w2 < kWarps; ++w2) total += warp_tails_[j * kWarps + w2];
      out[j] = total;
    }
    __syncthreads();
  }

  template <class F>
  __device__ uint64_t Max(F f) {
    unsigned long long local = 0;
    for (int32_t i = threadIdx.x; i < v_; i += kSampleThreads) {
      const unsigned long long x = f(i);
      local = x > local ? x : local;
    }
    return MaxOfThreads(local);
  }

  template <class F>
  __device__ int32_t FirstCumulative(F f, double base, double target, bool strict) {
    const int32_t chunk = (v_ + kSampleThreads - 1) / kSampleThreads;
    const int32_t begin = Clamp(static_cast<int64_t>(threadIdx.x) * chunk);
    const int32_t end = Clamp(static_cast<int64_t>(threadIdx.x + 1) * chunk);
    double incl = 0.0;
    for (int32_t i = begin; i < end; ++i) incl += f(i);
    for (int off = 1; off < 32; off <<= 1) {
      const double lower = __shfl_up_sync(kFullMask, incl, off);
      if (Lane() >= off) incl = lower + incl;
    }
    double excl = __shfl_up_sync(kFullMask, incl, 1);
    if (Lane() == 0) excl = 0.0;
    if (Lane() == 31) warp_sums_[Warp()] = incl;
    __syncthreads();
    double c = base;
    for (int w = 0; w < Warp(); ++w) c += warp_sums_[w];
    c += excl;
    unsigned long long found = 0;  // ~index of this thread's first hit, 0 for none
    for (int32_t i = begin; i < end; ++i) {
      c += f(i);
      if (strict ? c > target : c >= target) {
        found = ~static_cast<unsigned long long>(i);
        break;
      }
    }
    const unsigned long long first = MaxOfThreads(found);
    return first == 0 ? -1 : static_cast<int32_t>(~first);
  }

 private:
  __device__ static int Lane() { return threadIdx.x & 31; }
  __device__ static int Warp() { return threadIdx.x >> 5; }
  __device__ int32_t Clamp(int64_t i) const { return static_cast<int32_t>(i < v_ ? i : v_); }

  __device__ unsigned long long MaxOfThreads(unsigned long long local) {
    for (int off = 16; off > 0; off >>= 1) {
      const unsigned long long other = __shfl_xor_sync(kFullMask, local, off);
      local = other > local ? other : local;
    }
    if (Lane() == 0) warp_max_[Warp()] = local;
    __syncthreads();
    unsigned long long m = 0;
    for (int w = 0; w < kWarps; ++w) m = warp_max_[w] > m ? warp_max_[w] : m;
    __syncthreads();
    return m;
  }

  int32_t v_;
  double* warp_sums_;
  double* warp_tails_;  // [kSearchThresholds][kWarps]
  unsigned long long* warp_max_;
};

__global__ void __launch_bounds__(kSampleThreads)
    SampleRowsKernel(MatF32 x, const RowSampling* params, int32_t* out) {
  __shared__ double warp_sums[kWarps];
  __shared__ double warp_tails[kSearchThresholds * kWarps];
  __shared__ unsigned long long warp_max[kWarps];
  DeviceBlock block(static_cast<int32_t>(x.cols), warp_sums, warp_tails, warp_max);
  const int64_t row = blockIdx.x;
  const int32_t token = sample_algo::SampleRow(block, x.row(row), params[row]);
  if (threadIdx.x == 0) out[row] = token;
}

}  // namespace

cudaError_t LaunchSampleRows(const Tensor& x, const RowSampling* params, const Tensor& out,
                             cudaStream_t stream) {
  const MatF32 xm = AsMatF32(x);
  JAMBA_CHECK(xm.cols >= 1 && xm.cols <= INT32_MAX - kSampleThreads);  // no index overflow
  JAMBA_CHECK(out.device == Device::kCuda && out.dtype == DType::kI32 && out.numel() == xm.rows &&
              out.contiguous());
  JAMBA_CHECK(xm.rows <= INT32_MAX);
  if (xm.rows == 0) return cudaSuccess;
  Launch(SampleRowsKernel, static_cast<unsigned>(xm.rows), kSampleThreads, 0, stream, xm, params,
         out.ptr<int32_t>());
  return cudaGetLastError();
}

}  // namespace jamba::cuda
