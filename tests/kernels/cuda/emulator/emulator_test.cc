// The CUDA emulator's execution model and runtime against the CUDA programming guide's rules,
// with hand-computed expectations: thread indices, barriers, shuffles (every variant, with
// sub-warp widths), match / ballot, atomics, dynamic shared memory and its opt-in limit,
// launch-configuration errors, the memory checks, the GEMMs; and the faults it must stop on
// (deadlocks, mask misuse, out-of-bounds accesses) as death tests. The warp matrix functions
// (wmma, tf32): products, tf32 rounding and truncation, and the operand rules.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace {

template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared,
                   Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// Device buffers of T, freed at scope exit.
template <typename T>
class DeviceVec {
 public:
  explicit DeviceVec(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), cudaSuccess);
  }
  explicit DeviceVec(const std::vector<T>& host) : DeviceVec(host.size()) {
    EXPECT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceVec() { cudaFree(p_); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  T* get() const { return p_; }
  std::vector<T> Read() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  size_t n_;
  T* p_ = nullptr;
};

// ---- Kernels -------------------------------------------------------------------------------

__global__ void IndexKernel(int* out) {
  const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int per_block = blockDim.x * blockDim.y * blockDim.z;
  out[block * per_block + thread] = block * 1000 + thread;
}

// Each thread reads its right neighbour's value, written before the barrier.
__global__ void NeighbourKernel(int* out) {
  __shared__ int values[256];
  const int t = threadIdx.x;
  values[t] = 10 * t + static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = values[(t + 1) % blockDim.x];
}

struct ShuffleOut {
  float xor_sum;    // butterfly sum over the warp
  int up_scan;      // inclusive prefix sum of lane + 1 within groups of 8
  int down;         // lane + 3 from __shfl_down_sync (own value past the end of 32)
  int broadcast;    // lane 2 of each group of 8
  int xor_width;    // __shfl_xor_sync(.., 8, width 16): own value where it would leave the group
  unsigned match;   // lanes with the same lane % 3
  unsigned ballot;  // lanes with odd lane numbers
};

__global__ void ShuffleKernel(ShuffleOut* out) {
  const int lane = threadIdx.x & 31;
  float v = static_cast<float>(lane);
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  int scan = lane % 8 + 1;
  for (int d = 1; d < 8; d <<= 1) {
    const int other = __shfl_up_sync(0xffffffffu, scan, d, 8);
    if (lane % 8 >= d) scan += other;
  }
  ShuffleOut o;
  o.xor_sum = v;
  o.up_scan = scan;
  o.down = __shfl_down_sync(0xffffffffu, lane, 3);
  o.broadcast = __shfl_sync(0xffffffffu, lane, 2, 8);
  o.xor_width = __shfl_xor_sync(0xffffffffu, lane, 24, 16);
  o.match = __match_any_sync(0xffffffffu, lane % 3);
  o.ballot = __ballot_sync(0xffffffffu, lane & 1);
  out[threadIdx.x] = o;
}

// Lanes 0-15 and 16-31 shuffle separately (disjoint masks at the same time).
__global__ void HalfWarpKernel(int* out) {
  const int lane = threadIdx.x & 31;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  int v = lane;
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(mask, v, offset);
  out[threadIdx.x] = v;
}

__global__ void AtomicKernel(int* counter, float* sum) {
  atomicAdd(counter, 1);
  atomicAdd(sum, 0.5f);
}

__global__ void DynamicSharedKernel(float* first, int n, float* out) {
  float* s = static_cast<float*>(jamba::cuda_emu::DynamicSharedMemory());
  if (threadIdx.x == 0) *first = s[n - 1];  // before anyone writes: the 0xff fill
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = static_cast<float>(i % 4);
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < n; ++i) total += s[i];
  if (threadIdx.x == 0) *out = total;
}

// Threads that exit before a barrier do not hold it up (compute capability 7.0+ behaviour).
__global__ void EarlyExitKernel(int* out) {
  __shared__ int value;
  if (threadIdx.x >= 40) return;
  if (threadIdx.x == 0) value = 7;
  __syncthreads();
  out[threadIdx.x] = value;
}

__global__ void DeadlockKernel() {
  const int lane = threadIdx.x & 31;
  if (lane < 16) {
    (void)__shfl_xor_sync(0xffffffffu, lane, 1);  // waits for lanes 16-31 ...
  } else {
    __syncthreads();  // ... which wait for lanes 0-15
  }
}

__global__ void MaskWithoutSelfKernel() { (void)__shfl_sync(0x1u, 1, 0); }

// Lane 9 is not in the mask: no value (undefined on a GPU), NaN here.
__global__ void ShuffleOutsideMaskKernel(float* out) {
  const int lane = threadIdx.x & 31;
  if (lane < 8) out[lane] = __shfl_sync(0xffu, static_cast<float>(lane), 9);
}

// Lane 1 takes part in two collectives with overlapping masks, one after the other (valid on
// compute capability 7.0+, whichever group forms first).
__global__ void OverlappingMasksKernel(int* out) {
  const int lane = threadIdx.x & 31;
  int a = -1, b = -1;
  if (lane < 2) a = __shfl_sync(0x3u, 10 + lane, 0);
  if (lane >= 1 && lane < 3) b = __shfl_sync(0x6u, 20 + lane, 1);
  out[2 * lane] = a;
  out[2 * lane + 1] = b;
}

// Collectives wait only for lanes that have not exited; a 48-thread block's second warp has
// 16 lanes.
__global__ void ExitedLanesKernel(unsigned* out) {
  const int t = threadIdx.x, lane = t & 31;
  if (t < 32 && lane >= 20) return;
  __syncwarp();
  out[2 * t] = __ballot_sync(0xffffffffu, 1);
  out[2 * t + 1] = __all_sync(0xffffffffu, 1);
}

// Thread 1 reads what thread 0 writes with no barrier in between: a race, which the two
// thread orders must decide differently after the barrier.
__global__ void RaceAfterBarrierKernel(int* out) {
  __shared__ int s;
  if (threadIdx.x == 0) s = 0;
  __syncthreads();
  if (threadIdx.x == 0) s = 1;
  if (threadIdx.x == 1) *out = s;
}

__global__ void MixedCollectivesKernel() {
  const int lane = threadIdx.x & 31;
  if (lane == 0) {
    (void)__shfl_sync(0xffffffffu, lane, 1);
  } else {
    (void)__ballot_sync(0xffffffffu, 1);
  }
}

__global__ void OutOfBoundsKernel(float* p, int n) {
  p[n + 64] = 1.0f;
}  // past the 256-byte rounding

namespace wmma = nvcuda::wmma;
using TfA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using TfACol = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using TfB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using TfAcc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// d = a b + c with a [16, 8] (row-major, or column-major as a_t [8, 16] when `a_col`),
// b [8, 16], c and d [16, 16]; `round` converts a and b to tf32 first.
__global__ void WmmaKernel(const float* a, const float* a_t, const float* b, const float* c,
                           float* d, bool a_col, bool round) {
  TfA fa;
  TfACol fa_col;
  TfB fb;
  TfAcc acc;
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  if (round) {
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  }
  if (a_col) {
    wmma::load_matrix_sync(fa_col, a_t, 16);
    wmma::mma_sync(acc, fa_col, fb, acc);
  } else {
    wmma::load_matrix_sync(fa, a, 8);
    if (round) {
      for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    }
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

__global__ void Tf32Kernel(const float* in, float* out, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = wmma::__float_to_tf32(in[i]);
}

// Misuses: a pointer off the 256-bit grid, a stride that is not a multiple of 4 floats, lanes
// that disagree on the pointer, and a load only some lanes reach.
__global__ void WmmaMisuseKernel(const float* p, int how) {
  TfA fa;
  const int lane = threadIdx.x % 32;
  if (how == 0) wmma::load_matrix_sync(fa, p + 4, 8);
  if (how == 1) wmma::load_matrix_sync(fa, p, 6);
  if (how == 2) wmma::load_matrix_sync(fa, p + (lane == 3 ? 8 : 0), 8);
  if (how == 3 && lane < 16) wmma::load_matrix_sync(fa, p, 8);
}

// ---- Tests ---------------------------------------------------------------------------------

TEST(CudaEmulatorTest, EveryThreadOfTheGridRunsWithItsIndices) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const int total = 12 * 24;
  DeviceVec<int> out(total);
  ASSERT_EQ(Launch(IndexKernel, grid, block, 0, out.get()), cudaSuccess);
  const std::vector<int> got = out.Read();
  for (int b = 0; b < 12; ++b)
    for (int t = 0; t < 24; ++t) EXPECT_EQ(got[b * 24 + t], b * 1000 + t);
}

TEST(CudaEmulatorTest, SyncThreadsOrdersSharedMemory) {
  DeviceVec<int> out(2 * 256);
  ASSERT_EQ(Launch(NeighbourKernel, dim3(2), dim3(256), 0, out.get()), cudaSuccess);
  const std::vector<int> got = out.Read();
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(got[b * 256 + t], 10 * ((t + 1) % 256) + b);
}

TEST(CudaEmulatorTest, ShufflesMatchAndBallotFollowTheProgrammingGuide) {
  DeviceVec<ShuffleOut> out(64);
  ASSERT_EQ(Launch(ShuffleKernel, dim3(1), dim3(64), 0, out.get()), cudaSuccess);
  const std::vector<ShuffleOut> got = out.Read();
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    SCOPED_TRACE(t);
    EXPECT_EQ(got[t].xor_sum, 496.0f);  // 0 + 1 + ... + 31
    const int g = lane % 8 + 1;
    EXPECT_EQ(got[t].up_scan, g * (g + 1) / 2);
    EXPECT_EQ(got[t].down, lane + 3 < 32 ? lane + 3 : lane);
    EXPECT_EQ(got[t].broadcast, lane / 8 * 8 + 2);
    // lane ^ 24 stays in the lane's group of 16 only when it goes down (16-31 -> 0-15 is
    // an earlier group, allowed); 0-15 -> 16-31 is a later one: own value.
    EXPECT_EQ(got[t].xor_width, lane < 16 ? lane : lane ^ 24);
    unsigned match = 0;
    for (int i = 0; i < 32; ++i)
      if (i % 3 == lane % 3) match |= 1u << i;
    EXPECT_EQ(got[t].match, match);
    EXPECT_EQ(got[t].ballot, 0xaaaaaaaau);
  }
}

TEST(CudaEmulatorTest, DisjointMasksShuffleIndependently) {
  DeviceVec<int> out(32);
  ASSERT_EQ(Launch(HalfWarpKernel, dim3(1), dim3(32), 0, out.get()), cudaSuccess);
  const std::vector<int> got = out.Read();
  for (int lane = 0; lane < 32; ++lane) EXPECT_EQ(got[lane], lane < 16 ? 120 : 376);
}

TEST(CudaEmulatorTest, AShuffleFromALaneOutsideTheMaskGivesNaN) {
  DeviceVec<float> out(8);
  ASSERT_EQ(Launch(ShuffleOutsideMaskKernel, dim3(1), dim3(8), 0, out.get()), cudaSuccess);
  for (float v : out.Read()) EXPECT_TRUE(std::isnan(v));
}

TEST(CudaEmulatorTest, OverlappingMasksInSequence) {
  DeviceVec<int> out(64);
  ASSERT_EQ(Launch(OverlappingMasksKernel, dim3(1), dim3(32), 0, out.get()), cudaSuccess);
  const std::vector<int> got = out.Read();
  EXPECT_EQ(std::vector<int>(got.begin(), got.begin() + 6),
            (std::vector<int>{10, -1, 10, 21, -1, 21}));
  for (int i = 6; i < 64; ++i) EXPECT_EQ(got[i], -1) << i;
}

TEST(CudaEmulatorTest, CollectivesSkipExitedAndMissingLanes) {
  DeviceVec<unsigned> out(std::vector<unsigned>(96, 7));
  ASSERT_EQ(Launch(ExitedLanesKernel, dim3(1), dim3(48), 0, out.get()), cudaSuccess);
  const std::vector<unsigned> got = out.Read();
  for (int t = 0; t < 48; ++t) {
    SCOPED_TRACE(t);
    const bool exited = t < 32 && t >= 20;
    EXPECT_EQ(got[2 * t], exited ? 7u : (t < 32 ? 0xfffffu : 0xffffu));
    EXPECT_EQ(got[2 * t + 1], exited ? 7u : 1u);
  }
}

// The two orders differ right after a barrier, for every pair of threads: here thread 1
// reads thread 0's unsynchronised write in one order and not in the other.
TEST(CudaEmulatorTest, ThreadOrdersDecideARaceDifferently) {
  const char* order = std::getenv("JAMBA_CUDA_EMULATOR_ORDER");
  const bool reverse = order != nullptr && std::string(order) == "reverse";
  DeviceVec<int> out(std::vector<int>{-1});
  ASSERT_EQ(Launch(RaceAfterBarrierKernel, dim3(1), dim3(64), 0, out.get()), cudaSuccess);
  EXPECT_EQ(out.Read()[0], reverse ? 0 : 1);
}

TEST(CudaEmulatorTest, AtomicsCountEveryThread) {
  DeviceVec<int> counter(std::vector<int>{0});
  DeviceVec<float> sum(std::vector<float>{0.0f});
  ASSERT_EQ(Launch(AtomicKernel, dim3(5), dim3(300), 0, counter.get(), sum.get()), cudaSuccess);
  EXPECT_EQ(counter.Read()[0], 1500);
  EXPECT_EQ(sum.Read()[0], 750.0f);
}

TEST(CudaEmulatorTest, EarlyExitedThreadsDoNotHoldABarrier) {
  DeviceVec<int> out(std::vector<int>(64, -1));
  ASSERT_EQ(Launch(EarlyExitKernel, dim3(1), dim3(64), 0, out.get()), cudaSuccess);
  const std::vector<int> got = out.Read();
  for (int t = 0; t < 64; ++t) EXPECT_EQ(got[t], t < 40 ? 7 : -1);
}

TEST(CudaEmulatorTest, DynamicSharedMemoryStartsPoisonedAndNeedsAnOptInPast48KiB) {
  DeviceVec<float> first(1), total(1);
  int n = 1000;
  ASSERT_EQ(Launch(DynamicSharedKernel, dim3(1), dim3(128), n * sizeof(float), first.get(), n,
                   total.get()),
            cudaSuccess);
  EXPECT_TRUE(std::isnan(first.Read()[0]));
  EXPECT_EQ(total.Read()[0], 1500.0f);  // 250 * (0 + 1 + 2 + 3), exact in f32

  n = 20000;  // 80000 bytes: over the 48 KiB default
  EXPECT_EQ(Launch(DynamicSharedKernel, dim3(1), dim3(128), n * sizeof(float), first.get(), n,
                   total.get()),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read and cleared
  int optin = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0),
            cudaSuccess);
  EXPECT_EQ(cudaFuncSetAttribute(DynamicSharedKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 optin + 1),
            cudaErrorInvalidValue);
  ASSERT_EQ(
      cudaFuncSetAttribute(DynamicSharedKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
      cudaSuccess);
  ASSERT_EQ(Launch(DynamicSharedKernel, dim3(1), dim3(128), n * sizeof(float), first.get(), n,
                   total.get()),
            cudaSuccess);
  EXPECT_EQ(total.Read()[0], 30000.0f);
}

TEST(CudaEmulatorTest, BadLaunchConfigurationsAreRefused) {
  DeviceVec<int> out(1);
  EXPECT_EQ(Launch(IndexKernel, dim3(1), dim3(1025), 0, out.get()), cudaErrorInvalidConfiguration);
  EXPECT_EQ(Launch(IndexKernel, dim3(1), dim3(32, 32, 2), 0, out.get()),
            cudaErrorInvalidConfiguration);
  EXPECT_EQ(Launch(IndexKernel, dim3(0), dim3(32), 0, out.get()), cudaErrorInvalidConfiguration);
  EXPECT_EQ(Launch(IndexKernel, dim3(1, 65536), dim3(32), 0, out.get()),
            cudaErrorInvalidConfiguration);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(1);
  config.blockDim = dim3(1);
  config.stream = stream;  // destroyed
  EXPECT_EQ(cudaLaunchKernelEx(&config, IndexKernel, out.get()), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
}

TEST(CudaEmulatorTest, RuntimeChecksCopiesAgainstAllocations) {
  size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 1000), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, 1000u);
  std::vector<uint8_t> host(1001, 3);
  EXPECT_EQ(cudaMemcpy(p, host.data(), 1000, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.data(), 1001, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), p, 1001, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), host.data() + 1, 10, cudaMemcpyDeviceToHost),
            cudaErrorInvalidValue);  // the source is host memory
  EXPECT_EQ(cudaMemset(static_cast<uint8_t*>(p) + 500, 0, 501), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);  // twice
  cudaGetLastError();

  // Past the device's 80 GiB, or past what size_t can round: refused, nothing mapped.
  EXPECT_EQ(cudaMalloc(&p, (size_t{81} << 30)), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaMalloc(&p, SIZE_MAX), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaMallocHost(&p, SIZE_MAX), cudaErrorMemoryAllocation);
  cudaGetLastError();

  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  cudaGetLastError();
}

TEST(CudaEmulatorTest, EventsTimeAndRejectUntimedOnes) {
  cudaEvent_t a = nullptr, b = nullptr, untimed = nullptr;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming), cudaSuccess);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorInvalidResourceHandle);  // not recorded
  ASSERT_EQ(cudaEventRecord(a), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(b), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(untimed), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorNotReady);  // recorded, not reached
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, untimed), cudaErrorInvalidResourceHandle);
  for (cudaEvent_t e : {a, b, untimed}) EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
  cudaGetLastError();
}

// Work runs at the host's synchronisation points, and copies follow the runtime's rules:
// a pinned source is read when the copy runs, a pageable one when it is enqueued; a pinned
// destination is written when the copy runs.
TEST(CudaEmulatorTest, StreamWorkRunsAtSynchronisationWithTheRuntimesCopyRules) {
  DeviceVec<int> from_pinned(4), from_pageable(4), written(64);
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 8 * sizeof(int)), cudaSuccess);
  for (int i = 0; i < 8; ++i) pinned[i] = i + 1;
  std::vector<int> pageable = {5, 6, 7, 8};
  ASSERT_EQ(cudaMemcpyAsync(from_pinned.get(), pinned, 4 * sizeof(int), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(from_pageable.get(), pageable.data(), 4 * sizeof(int),
                            cudaMemcpyHostToDevice),
            cudaSuccess);
  pinned[0] = 100;    // before the copy has run: it reads 100
  pageable[0] = 500;  // staged at the call: the device gets 5
  ASSERT_EQ(Launch(IndexKernel, dim3(2), dim3(32), 0, written.get()), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned + 4, written.get() + 33, sizeof(int), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(pinned[4], 5);  // neither the grid nor the copy back has run
  ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  EXPECT_EQ(pinned[4], 1001);  // block 1, thread 1
  EXPECT_EQ(from_pinned.Read(), (std::vector<int>{100, 2, 3, 4}));
  EXPECT_EQ(from_pageable.Read(), (std::vector<int>{5, 6, 7, 8}));
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

uint16_t Bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return static_cast<uint16_t>(bits >> 16);  // the test values are exact in bf16
}

TEST(CudaEmulatorTest, GemmsAreColumnMajorAndSkipCWhenBetaIsZero) {
  // Row-major w [3, 2] and x [2, 2]; y = x w^T [2, 3] row-major is the column-major 3 x 2
  // y^T = op_T(w as column-major 2 x 3) * (x as column-major 2 x 2), the backend's layout.
  const std::vector<float> w = {1, 2, 3, 4, 5, 6}, x = {1, -1, 2, 0.5f};
  const std::vector<float> want = {-1, -1, -1, 3, 8, 13};  // y[i][j] = x[i] . w[j]
  DeviceVec<float> wd(w), xd(x), y(6);  // y holds the 0xff (NaN) fill: beta 0 must not read it
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 2, &one, wd.get(), 2, xd.get(), 2, &zero,
                        y.get(), 3),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(y.Read(), want);

  std::vector<uint16_t> wb, xb;
  for (float v : w) wb.push_back(Bf16(v));
  for (float v : x) xb.push_back(Bf16(v));
  DeviceVec<uint16_t> wbd(wb), xbd(xb);
  const float two = 2.0f;  // y = 1 * x w^T + 2 * y
  ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 2, &one, wbd.get(), CUDA_R_16BF, 2,
                         xbd.get(), CUDA_R_16BF, 2, &two, y.get(), CUDA_R_32F, 3,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  std::vector<float> want3;
  for (float v : want) want3.push_back(3 * v);
  EXPECT_EQ(y.Read(), want3);

  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 2, &one, wd.get(), 1, xd.get(), 2, &zero,
                        y.get(), 3),
            CUBLAS_STATUS_INVALID_VALUE);  // lda < k for a transposed A
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 2, &one, wbd.get(), CUDA_R_16BF, 2,
                         xd.get(), CUDA_R_32F, 2, &zero, y.get(), CUDA_R_32F, 3, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);  // mixed input types
  // alpha = 0: C = beta C without reading A or B (here the NaN fill of a fresh buffer).
  DeviceVec<float> nan_a(6);
  const float half = 0.5f;
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 2, &zero, nan_a.get(), 2, xd.get(), 2,
                        &half, y.get(), 3),
            CUBLAS_STATUS_SUCCESS);
  std::vector<float> want15;
  for (float v : want3) want15.push_back(0.5f * v);
  EXPECT_EQ(y.Read(), want15);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

TEST(CudaEmulatorTest, WmmaTf32ProductsAreExactOnTf32Values) {
  // Integers below 2^11 are tf32 values, and every product and sum here is exact in f32.
  std::vector<float> a(16 * 8), a_t(8 * 16), b(8 * 16), c(16 * 16);
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 8; ++k) a[r * 8 + k] = a_t[k * 16 + r] = static_cast<float>(r - 2 * k);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 16; ++n) b[k * 16 + n] = static_cast<float>((k * 7 + n * 3) % 11 - 5);
  for (int i = 0; i < 256; ++i) c[i] = static_cast<float>(i % 13);
  DeviceVec<float> da(a), dat(a_t), db(b), dc(c), dd(256);
  for (bool a_col : {false, true}) {
    SCOPED_TRACE(a_col ? "a column-major" : "a row-major");
    ASSERT_EQ(Launch(WmmaKernel, dim3(1), dim3(32), 0, da.get(), dat.get(), db.get(), dc.get(),
                     dd.get(), a_col, false),
              cudaSuccess);
    const std::vector<float> d = dd.Read();
    for (int r = 0; r < 16; ++r) {
      for (int n = 0; n < 16; ++n) {
        float want = c[r * 16 + n];
        for (int k = 0; k < 8; ++k) want += a[r * 8 + k] * b[k * 16 + n];
        EXPECT_EQ(d[r * 16 + n], want) << r << ", " << n;
      }
    }
  }
}

TEST(CudaEmulatorTest, TensorCoresTruncateUnroundedTf32Operands) {
  // a = 1 + 2^-11 + 2^-20 (below tf32's 10 mantissa bits), b = 1, c = 0. The tensor cores
  // read a truncated to 1; rounded first (to nearest) it is 1 + 2^-10.
  const float x = 1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20);
  std::vector<float> a(16 * 8, 0.0f), b(8 * 16, 0.0f), c(256, 0.0f);
  a[0] = x;
  b[0] = 1.0f;
  DeviceVec<float> da(a), db(b), dc(c), dd(256);
  ASSERT_EQ(Launch(WmmaKernel, dim3(1), dim3(32), 0, da.get(), da.get(), db.get(), dc.get(),
                   dd.get(), false, false),
            cudaSuccess);
  EXPECT_EQ(dd.Read()[0], 1.0f);
  ASSERT_EQ(Launch(WmmaKernel, dim3(1), dim3(32), 0, da.get(), da.get(), db.get(), dc.get(),
                   dd.get(), false, true),
            cudaSuccess);
  EXPECT_EQ(dd.Read()[0], 1.0f + std::ldexp(1.0f, -10));
}

TEST(CudaEmulatorTest, Tf32RoundingIsToNearestWithTiesAwayFromZero) {
  const float ulp = std::ldexp(1.0f, -10);  // tf32's spacing in [1, 2)
  const std::vector<float> in = {
      1.0f + ulp / 2,                                             // a tie: away from zero
      -(1.0f + ulp / 2), 1.0f + ulp / 2 - std::ldexp(1.0f, -23),  // below the tie
      1.0f + 1.5f * ulp,                                          // a tie above 1 + ulp
      INFINITY,          -0.0f};
  const std::vector<float> want = {1.0f + ulp,     -(1.0f + ulp), 1.0f,
                                   1.0f + 2 * ulp, INFINITY,      -0.0f};
  DeviceVec<float> din(in), dout(in.size());
  ASSERT_EQ(
      Launch(Tf32Kernel, dim3(1), dim3(32), 0, din.get(), dout.get(), static_cast<int>(in.size())),
      cudaSuccess);
  const std::vector<float> got = dout.Read();
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << i;
    EXPECT_EQ(std::signbit(got[i]), std::signbit(want[i])) << i;
  }
  DeviceVec<float> nan(std::vector<float>{NAN});
  ASSERT_EQ(Launch(Tf32Kernel, dim3(1), dim3(1), 0, nan.get(), dout.get(), 1), cudaSuccess);
  EXPECT_TRUE(std::isnan(dout.Read()[0]));
}

using CudaEmulatorDeathTest = ::testing::Test;

TEST(CudaEmulatorDeathTest, StopsOnKernelBugs) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Grids run at the next synchronisation.
  EXPECT_DEATH(
      {
        Launch(DeadlockKernel, dim3(1), dim3(32), 0);
        cudaDeviceSynchronize();
      },
      "deadlock: 16 threads at __syncthreads, 16 at warp collectives");
  EXPECT_DEATH(
      {
        Launch(MaskWithoutSelfKernel, dim3(1), dim3(2), 0);
        cudaDeviceSynchronize();
      },
      "leaves out its own lane");
  EXPECT_DEATH(
      {
        Launch(MixedCollectivesKernel, dim3(1), dim3(32), 0);
        cudaDeviceSynchronize();
      },
      "lanes of a warp meet in different collectives with the same mask");
  DeviceVec<float> p(16);
  EXPECT_DEATH(
      {
        Launch(OutOfBoundsKernel, dim3(1), dim3(1), 0, p.get(), 16);
        cudaDeviceSynchronize();
      },
      "invalid memory access at 0x[0-9a-f]+ in block \\(0, 0, 0\\), thread \\(0, 0, 0\\)");
  DeviceVec<float> m(16 * 16);
  const std::pair<int, const char*> misuses[] = {
      {0, "wmma load/store pointer is not 256-bit aligned"},
      {1, "wmma load/store stride is not a multiple of 16 bytes"},
      {2, "lanes of a warp give a wmma load/store different operands"},
      {3, "deadlock|a wmma operation needs all 32 lanes of the warp"}};
  for (const auto& [how, message] : misuses) {
    EXPECT_DEATH(
        {
          Launch(WmmaMisuseKernel, dim3(1), dim3(32), 0, m.get(), how);
          cudaDeviceSynchronize();
        },
        message);
  }
}

}  // namespace
