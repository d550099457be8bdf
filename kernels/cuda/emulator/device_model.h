// Device-side built-ins of CUDA C++ for kernels compiled by the host compiler under the
// emulator: thread indices, __shared__, barriers, warp shuffles / votes / match, atomics,
// bit-cast and integer intrinsics, vector types, and the device overloads of min / max.
//
// Semantics follow the CUDA C++ Programming Guide for compute capability 7.0+ (independent
// thread scheduling): collectives name their participants with a mask and every lane of the
// mask must reach the same collective. Device math (expf, ...) is the host's libm: results
// may differ from a GPU's in the last bits, as the CPU backend's do.
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_DEVICE_MODEL_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_DEVICE_MODEL_H_

#include <math.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/emulator/grid.h"

// A __shared__ variable is one object per block. Blocks run one at a time (LaunchGrid), and
// a block's threads are fibers of one OS thread, so a static is exactly that.
#define __shared__ static

// The built-in index variables: the scheduler copies the running fiber's into them whenever it
// switches fibers (grid.cc).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace jamba::cuda_emu {

template <typename T>
uint64_t ToBits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "a 1-8 byte value");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T FromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

inline void CheckWidth(int width) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    KernelFault("shuffle width must be a power of two in [1, 32]");
  }
}

// Collective kinds (WarpGather): lanes meeting in one must run the same instruction.
enum ShuffleMode : uint32_t { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3 };
inline constexpr uint32_t ShuffleKind(ShuffleMode mode, int width) {
  return 0x100u + mode * 64u + static_cast<uint32_t>(width);
}
inline constexpr uint32_t kBallotKind = 0x200, kAnyKind = 0x201, kAllKind = 0x202,
                          kMatchAnyKind = 0x203;

// The value lane `src` contributed to a shuffle over `mask` (src == the caller: its own).
// A lane outside the mask or exited gives no value (undefined on a GPU): all-ones bits here,
// NaN as a float, so a result that uses it shows up.
template <typename T>
T ShuffleFrom(unsigned mask, uint32_t kind, T var, int src) {
  uint64_t lanes[32];
  const unsigned gave = WarpGather(mask, kind, ToBits(var), lanes);
  if (src == t_thread->lane) return var;
  return FromBits<T>(((gave >> src) & 1u) != 0 ? lanes[src] : ~uint64_t{0});
}

// The lanes of `mask` that have not exited and whose predicate is non-zero; *gave: the lanes
// that took part.
inline unsigned Vote(unsigned mask, uint32_t kind, int predicate, unsigned* gave) {
  uint64_t lanes[32];
  *gave = WarpGather(mask, kind, predicate != 0 ? 1 : 0, lanes);
  unsigned bits = 0;
  for (int i = 0; i < 32; ++i) {
    if (((*gave >> i) & 1u) != 0 && lanes[i] != 0) bits |= 1u << i;
  }
  return bits;
}

}  // namespace jamba::cuda_emu

// ---- Barriers and warp collectives ------------------------------------------------------
inline void __syncthreads() { ::jamba::cuda_emu::SyncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::jamba::cuda_emu::SyncWarp(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  namespace emu = ::jamba::cuda_emu;
  emu::CheckWidth(width);
  const int lane = emu::t_thread->lane;
  return emu::ShuffleFrom(mask, emu::ShuffleKind(emu::kShflIdx, width), var,
                          (lane & ~(width - 1)) | (src_lane & (width - 1)));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  namespace emu = ::jamba::cuda_emu;
  emu::CheckWidth(width);
  const int lane = emu::t_thread->lane;
  const bool own = static_cast<unsigned>(lane & (width - 1)) < delta;
  return emu::ShuffleFrom(mask, emu::ShuffleKind(emu::kShflUp, width), var,
                          own ? lane : lane - static_cast<int>(delta));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  namespace emu = ::jamba::cuda_emu;
  emu::CheckWidth(width);
  const int lane = emu::t_thread->lane;
  const bool own =
      static_cast<unsigned>(lane & (width - 1)) + delta >= static_cast<unsigned>(width);
  return emu::ShuffleFrom(mask, emu::ShuffleKind(emu::kShflDown, width), var,
                          own ? lane : lane + static_cast<int>(delta));
}
// A lane may read from its own or an earlier group of `width` lanes, not a later one.
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  namespace emu = ::jamba::cuda_emu;
  emu::CheckWidth(width);
  const int lane = emu::t_thread->lane;
  const int src = lane ^ lane_mask;
  const bool own = src < 0 || src >= (lane & ~(width - 1)) + width;
  return emu::ShuffleFrom(mask, emu::ShuffleKind(emu::kShflXor, width), var, own ? lane : src);
}

template <typename T>
unsigned __match_any_sync(unsigned mask, T value) {
  namespace emu = ::jamba::cuda_emu;
  uint64_t lanes[32];
  const uint64_t mine = emu::ToBits(value);
  const unsigned gave = emu::WarpGather(mask, emu::kMatchAnyKind, mine, lanes);
  unsigned same = 0;
  for (int i = 0; i < 32; ++i) {
    if (((gave >> i) & 1u) != 0 && lanes[i] == mine) same |= 1u << i;
  }
  return same;
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  unsigned gave = 0;
  return ::jamba::cuda_emu::Vote(mask, ::jamba::cuda_emu::kBallotKind, predicate, &gave);
}
inline int __any_sync(unsigned mask, int predicate) {
  unsigned gave = 0;
  return ::jamba::cuda_emu::Vote(mask, ::jamba::cuda_emu::kAnyKind, predicate, &gave) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  unsigned gave = 0;
  return ::jamba::cuda_emu::Vote(mask, ::jamba::cuda_emu::kAllKind, predicate, &gave) == gave;
}

// ---- Atomics (fibers switch only at synchronisation points: a plain update is atomic) ----
template <typename T, typename U>
T atomicAdd(T* address, U value) {
  const T old = *address;
  *address = static_cast<T>(old + value);
  return old;
}
template <typename T, typename U>
T atomicSub(T* address, U value) {
  const T old = *address;
  *address = static_cast<T>(old - value);
  return old;
}
template <typename T, typename U>
T atomicExch(T* address, U value) {
  const T old = *address;
  *address = static_cast<T>(value);
  return old;
}
template <typename T, typename U>
T atomicMax(T* address, U value) {
  const T old = *address;
  if (old < static_cast<T>(value)) *address = static_cast<T>(value);
  return old;
}
template <typename T, typename U>
T atomicMin(T* address, U value) {
  const T old = *address;
  if (static_cast<T>(value) < old) *address = static_cast<T>(value);
  return old;
}
template <typename T, typename U, typename V>
T atomicCAS(T* address, U compare, V value) {
  static_assert(std::is_integral_v<T>, "atomicCAS on integer words");
  const T old = *address;
  if (old == static_cast<T>(compare)) *address = static_cast<T>(value);
  return old;
}

// ---- Intrinsics -------------------------------------------------------------------------
inline unsigned __float_as_uint(float v) {
  return ::jamba::cuda_emu::FromBits<unsigned>(::jamba::cuda_emu::ToBits(v));
}
inline float __uint_as_float(unsigned v) { return ::jamba::cuda_emu::FromBits<float>(v); }
inline int __float_as_int(float v) {
  return ::jamba::cuda_emu::FromBits<int>(::jamba::cuda_emu::ToBits(v));
}
inline float __int_as_float(int v) {
  return ::jamba::cuda_emu::FromBits<float>(static_cast<uint32_t>(v));
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
inline float __expf(float v) { return expf(v); }
inline float __logf(float v) { return logf(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float v) {
  return v != v ? 0.0f : (v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v));
}
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}

// The device overloads of min / max: the usual arithmetic conversions, fminf / fmaxf for
// floating point (a NaN operand loses).
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) {
    return fmin(static_cast<C>(a), static_cast<C>(b));
  } else {
    return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
  }
}
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) {
    return fmax(static_cast<C>(a), static_cast<C>(b));
  } else {
    return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
  }
}

// ---- Vector types -------------------------------------------------------------------------
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(4) char4 {
  signed char x, y, z, w;
};
struct alignas(4) uchar4 {
  unsigned char x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_DEVICE_MODEL_H_
