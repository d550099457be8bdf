// The CUDA emulator's mma.h: the warp matrix functions (nvcuda::wmma) for the shape and types
// the kernels use, tf32 inputs with f32 accumulators at m16n16k8 (compute capability 8.0+).
//
// Semantics, after the CUDA C++ Programming Guide ("Warp Matrix Functions") and the PTX ISA:
//  - load_matrix_sync, store_matrix_sync and mma_sync are warp collectives: all 32 lanes must
//    reach them with the same pointer and stride (else the process stops, as a GPU's result
//    would be undefined). The pointer must be 256-bit aligned and the stride a multiple of 16
//    bytes (4 floats); the emulator stops on either fault as well.
//  - Which fragment element of which lane holds which matrix element is unspecified. Here
//    element i of lane l is the matrix's element number 32 i + l in row-major order (a stride,
//    not a lane's own row), so a kernel that assumes some mapping gets wrong results.
//  - The tensor cores read a tf32 operand's sign, exponent and top 10 mantissa bits only: an
//    f32 value that was not rounded with __float_to_tf32 is truncated, as on the GPU.
//    __float_to_tf32 rounds to nearest with ties away from zero (cvt.rna.tf32.f32).
//  - Products are accumulated in f32, in k order (a GPU's order and intermediate rounding are
//    unspecified; results may differ from it in the last bits).
#ifndef JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_MMA_H_
#define JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_MMA_H_

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace emu_detail {

inline uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}
inline float Float(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof(v));
  return v;
}

// What a tensor core reads of a tf32 operand.
inline float TruncateTf32(float v) { return std::isfinite(v) ? Float(Bits(v) & 0xffffe000u) : v; }

// A fragment of a Rows x Cols matrix spread over the warp: kElements per lane.
template <int Rows, int Cols>
struct Fragment {
  static constexpr int kRows = Rows;
  static constexpr int kCols = Cols;
  static constexpr int num_elements = Rows * Cols / 32;
  using element_type = float;
  float x[num_elements];
};

inline constexpr uint32_t kLoadKind = 0x300, kStoreKind = 0x301, kMmaKind = 0x302;

inline void NeedWholeWarp(unsigned arrived) {
  if (arrived != 0xffffffffu) {
    ::jamba::cuda_emu::KernelFault("a wmma operation needs all 32 lanes of the warp");
  }
}

// A load's or store's operands, which every lane must give alike.
struct Operand {
  const void* p;
  unsigned ldm;
};

inline void CheckOperands(const uint64_t lanes[32], unsigned arrived) {
  NeedWholeWarp(arrived);
  const Operand& first = *reinterpret_cast<const Operand*>(static_cast<uintptr_t>(lanes[0]));
  for (int i = 1; i < 32; ++i) {
    const Operand& o = *reinterpret_cast<const Operand*>(static_cast<uintptr_t>(lanes[i]));
    if (o.p != first.p || o.ldm != first.ldm) {
      ::jamba::cuda_emu::KernelFault("lanes of a warp give a wmma load/store different operands");
    }
  }
  if (reinterpret_cast<uintptr_t>(first.p) % 32 != 0) {
    ::jamba::cuda_emu::KernelFault("wmma load/store pointer is not 256-bit aligned");
  }
  if (first.ldm % 4 != 0) {
    ::jamba::cuda_emu::KernelFault("wmma load/store stride is not a multiple of 16 bytes");
  }
}

inline void Collective(uint32_t kind, const void* operands, ::jamba::cuda_emu::WarpHook hook) {
  ::jamba::cuda_emu::WarpGather(0xffffffffu, kind, reinterpret_cast<uintptr_t>(operands),
                                /*lanes=*/nullptr, hook);
}

// Row and column of element i of `lane`'s fragment of F.
template <typename F>
void Position(int i, int lane, int* r, int* c) {
  const int index = 32 * i + lane;
  *r = index / F::kCols;
  *c = index % F::kCols;
}

// Where element i of the running lane's fragment of F lives in a matrix at p with stride ldm.
template <typename F, typename T>
T* Element(T* p, unsigned ldm, int i, bool row_major) {
  int r, c;
  Position<F>(i, ::jamba::cuda_emu::t_thread->lane, &r, &c);
  return row_major ? p + static_cast<size_t>(r) * ldm + c : p + static_cast<size_t>(c) * ldm + r;
}

template <typename F>
void Load(F& f, const float* p, unsigned ldm, bool row_major) {
  const Operand operand{p, ldm};
  Collective(kLoadKind, &operand, &CheckOperands);
  for (int i = 0; i < F::num_elements; ++i) {
    f.x[i] = *Element<F>(p, ldm, i, row_major);
  }
}

template <typename F>
void Store(float* p, const F& f, unsigned ldm, bool row_major) {
  const Operand operand{p, ldm};
  Collective(kStoreKind, &operand, &CheckOperands);
  for (int i = 0; i < F::num_elements; ++i) *Element<F>(p, ldm, i, row_major) = f.x[i];
}

// One lane's mma_sync operands.
template <typename A, typename B, typename C>
struct MmaOperands {
  C* d;
  const A* a;
  const B* b;
  const C* c;
};

// Computes every lane's d from every lane's a, b and c, once for the warp (the hook of the
// mma_sync collective: all lanes wait in it, so their fragments are there to read and write).
template <typename A, typename B, typename C>
void MmaHook(const uint64_t lanes[32], unsigned arrived) {
  NeedWholeWarp(arrived);
  float am[A::kRows * A::kCols], bm[B::kRows * B::kCols], cm[C::kRows * C::kCols];
  for (int lane = 0; lane < 32; ++lane) {
    const auto& o =
        *reinterpret_cast<const MmaOperands<A, B, C>*>(static_cast<uintptr_t>(lanes[lane]));
    for (int i = 0; i < A::num_elements; ++i) am[32 * i + lane] = o.a->x[i];
    for (int i = 0; i < B::num_elements; ++i) bm[32 * i + lane] = o.b->x[i];
    for (int i = 0; i < C::num_elements; ++i) cm[32 * i + lane] = o.c->x[i];
  }
  // Every c is read before any d (which may be a c) is written.
  for (int lane = 0; lane < 32; ++lane) {
    const auto& o =
        *reinterpret_cast<const MmaOperands<A, B, C>*>(static_cast<uintptr_t>(lanes[lane]));
    for (int i = 0; i < C::num_elements; ++i) {
      int r, col;
      Position<C>(i, lane, &r, &col);
      float sum = cm[r * C::kCols + col];
      for (int k = 0; k < A::kCols; ++k) {
        sum = fmaf(TruncateTf32(am[r * A::kCols + k]), TruncateTf32(bm[k * B::kCols + col]), sum);
      }
      o.d->x[i] = sum;
    }
  }
}

}  // namespace emu_detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment;

template <typename Layout>
class fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> : public emu_detail::Fragment<16, 8> {
};
template <typename Layout>
class fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> : public emu_detail::Fragment<8, 16> {
};
template <>
class fragment<accumulator, 16, 16, 8, float, void> : public emu_detail::Fragment<16, 16> {};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float value) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = value;
}

template <typename Use, int M, int N, int K, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, precision::tf32, Layout>& f, const float* p,
                      unsigned ldm) {
  emu_detail::Load(f, p, ldm, std::is_same_v<Layout, row_major>);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 8, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  emu_detail::Load(f, p, ldm, layout == mem_row_major);
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 8, float>& f,
                              unsigned ldm, layout_t layout) {
  emu_detail::Store(p, f, ldm, layout == mem_row_major);
}

// d = a b + c over the warp. d may be c.
template <typename LayoutA, typename LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 8, float>& d,
              const fragment<matrix_a, 16, 16, 8, precision::tf32, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 8, precision::tf32, LayoutB>& b,
              const fragment<accumulator, 16, 16, 8, float>& c) {
  using A = fragment<matrix_a, 16, 16, 8, precision::tf32, LayoutA>;
  using B = fragment<matrix_b, 16, 16, 8, precision::tf32, LayoutB>;
  using C = fragment<accumulator, 16, 16, 8, float>;
  const emu_detail::MmaOperands<A, B, C> operands{&d, &a, &b, &c};
  emu_detail::Collective(emu_detail::kMmaKind, &operands, &emu_detail::MmaHook<A, B, C>);
}

// Rounds to tf32 (10 mantissa bits), to nearest with ties away from zero; the low 13 bits of
// the result are zero. NaN and infinities are kept.
inline float __float_to_tf32(float v) {
  if (!std::isfinite(v)) return v;
  // Adding half of the dropped range to the magnitude and truncating rounds halfway cases up
  // in magnitude; a carry into the exponent is the correct next binade (or infinity).
  return emu_detail::Float((emu_detail::Bits(v) + 0x1000u) & 0xffffe000u);
}

}  // namespace nvcuda::wmma

#endif  // JAMBA_KERNELS_CUDA_EMULATOR_INCLUDE_MMA_H_
