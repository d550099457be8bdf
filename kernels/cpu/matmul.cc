// y = x w^T (+ bias) on the CPU.
//
// Two kernels:
//  - the dot kernel (MatMulSkinny): every output y[t, r] is one dot product of x row t with
//    weight row r, accumulated in a fixed order (8 f32 lanes over k, a fixed horizontal sum,
//    then the k % 8 tail) that does not depend on how many rows x has or which other rows share
//    the call. A sequence therefore gets bit-identical results alone or inside any batch
//    ("batch invariance"), which is what lets the cluster reproduce single-process tokens
//    exactly. Weight rows are read once per block of kTokenBlock tokens and multiplied into
//    them while in cache; bf16 weights are widened to f32 in registers. Decode is bound by
//    weight bandwidth, so this is what decides tokens/s at small batch.
//  - the BLAS path (OpenBLAS sgemm): faster for prefill-sized x, but its summation order
//    depends on the batch shape. bf16 weights are widened to f32 one panel of rows at a time
//    (per thread) and multiplied with a single-threaded sgemm, so the full f32 copy of a matrix
//    never exists.
// MatMulInt8 (per-row-quantised int8 weights) always uses the dot kernel, widening int8 to f32
// in registers and scaling each finished dot product.
// MatMul uses the dot kernel for every shape in batch-invariant mode (the default), else the
// dot kernel up to kSkinnyThreshold rows and BLAS above.
#include <immintrin.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace jamba::cpu {
namespace {

constexpr int kSkinnyThreshold = 8;  // tuned with bench/jamba_bench --gemm (see README)
constexpr int kPanelRows = 64;       // bf16 -> f32 panel height of the BLAS path
// Tokens whose x rows stay in L2 while a block of weight rows streams past them.
constexpr int64_t kTokenBlock = 48;

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// int8 weights (MatMulInt8) widen exactly to f32; the per-row scale is applied to the sum.
inline __m256 Load8(const int8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) { return Bf16ToF32(*p); }
inline float Load1(const int8_t* p) { return static_cast<float>(*p); }

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

// out[t * R + r] = dot(w row r, x row t) for R weight rows and T tokens.
template <typename WT, int R, int T>
inline void DotBlock(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
                     float* out) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  // Single-token calls read each weight row once, in short runs (one row is k elements) that
  // the hardware prefetcher barely ramps up on; prefetching the next block's rows at the same
  // column keeps DRAM busy. Prefetches past the matrix are harmless hints.
  constexpr int64_t kLine = 64 / sizeof(WT);
  int64_t j = 0;
  for (; j + 8 <= k; j += 8) {
    if (T == 1 && j % kLine == 0) {
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * ldw + j), _MM_HINT_T0);
      }
    }
    __m256 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + j);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = Load8(w + r * ldw + j);
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = HorizontalSum(acc[r][t]);
      for (int64_t jj = j; jj < k; ++jj) s += Load1(w + r * ldw + jj) * x[t * ldx + jj];
      out[t * R + r] = s;
    }
  }
}

// y = dot (x scale[r], int8 weights) + bias[r].
inline float Finish(float dot, const float* scale, const float* bias, int64_t r) {
  if (scale != nullptr) dot *= scale[r];
  return dot + (bias ? bias[r] : 0.0f);
}

template <typename WT, int R>
void SkinnyRows(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t n, int64_t k,
                int64_t row0, const float* scale, const float* bias, float* y, int64_t ldy) {
  float out[R * 4];
  if (R > 2) {  // few-token calls only (see SkinnyImpl): no 4-token tiles
    const WT* wr = w + row0 * ldw;
    for (int64_t t0 = 0; t0 < n; ++t0) {
      DotBlock<WT, R, 1>(wr, ldw, x + t0 * ldx, ldx, k, out);
      for (int r = 0; r < R; ++r) y[t0 * ldy + row0 + r] = Finish(out[r], scale, bias, row0 + r);
    }
    return;
  }
  int64_t t0 = 0;
  auto emit = [&](int tcount) {
    for (int t = 0; t < tcount; ++t)
      for (int r = 0; r < R; ++r)
        y[(t0 + t) * ldy + row0 + r] = Finish(out[t * R + r], scale, bias, row0 + r);
  };
  const WT* wr = w + row0 * ldw;
  for (; t0 + 4 <= n; t0 += 4) {
    DotBlock<WT, R, 4>(wr, ldw, x + t0 * ldx, ldx, k, out);
    emit(4);
  }
  switch (n - t0) {
    case 3: DotBlock<WT, R, 3>(wr, ldw, x + t0 * ldx, ldx, k, out); emit(3); break;
    case 2: DotBlock<WT, R, 2>(wr, ldw, x + t0 * ldx, ldx, k, out); emit(2); break;
    case 1: DotBlock<WT, R, 1>(wr, ldw, x + t0 * ldx, ldx, k, out); emit(1); break;
    default: break;
  }
}

// Weight rows per block, by tokens per call: each (row, token) dot product is one dependency
// chain of FMAs, so few tokens need more rows in flight to hide FMA latency. This changes only
// which outputs are computed together, never the summation order of any output.
template <typename WT, int R>
void SkinnyImplR(const Tensor& x, const Tensor& w, const Tensor* scale, const Tensor* bias,
                 const Tensor& y) {
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  const WT* wp = w.ptr<WT>();
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  const float* sp = scale ? scale->ptr<float>() : nullptr;
  const int64_t ldw = w.ld(), ldx = x.ld(), ldy = y.ld();
  const int64_t blocks = m / R;
  for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
    const int64_t nt = std::min(kTokenBlock, n - t0);
    const float* xb = xp + t0 * ldx;
    float* yb = yp + t0 * ldy;
#pragma omp parallel for schedule(static) if (m * k * nt > (int64_t{1} << 19))
    for (int64_t b = 0; b < blocks; ++b) {
      SkinnyRows<WT, R>(wp, ldw, xb, ldx, nt, k, b * R, sp, bp, yb, ldy);
    }
    for (int64_t r = blocks * R; r < m; ++r) {
      SkinnyRows<WT, 1>(wp, ldw, xb, ldx, nt, k, r, sp, bp, yb, ldy);
    }
  }
}

// `scale`: per-row scales of int8 weights, else nullptr.
template <typename WT>
void SkinnyImpl(const Tensor& x, const Tensor& w, const Tensor* scale, const Tensor* bias,
                const Tensor& y) {
  switch (x.dim(0)) {
    case 1: return SkinnyImplR<WT, 8>(x, w, scale, bias, y);
    case 2:
    case 3: return SkinnyImplR<WT, 4>(x, w, scale, bias, y);
    default: return SkinnyImplR<WT, 2>(x, w, scale, bias, y);
  }
}

void CheckShapes(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                 DType w_dtype_a = DType::kF32, DType w_dtype_b = DType::kBF16) {
  JAMBA_CHECK(x.dtype == DType::kF32 && y.dtype == DType::kF32);
  JAMBA_CHECK(w.dtype == w_dtype_a || w.dtype == w_dtype_b);
  JAMBA_CHECK(x.ndim == 2 && w.ndim == 2 && y.ndim == 2);
  JAMBA_CHECK(w.dim(1) == x.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0));
  JAMBA_CHECK(bias == nullptr || (bias->dtype == DType::kF32 && bias->numel() == w.dim(0)));
  JAMBA_CHECK(x.stride[1] == 1 && w.stride[1] == 1 && y.stride[1] == 1);
}

}  // namespace

int SkinnyThreshold() { return kSkinnyThreshold; }

void MatMulSkinny(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  CheckShapes(x, w, bias, y);
  if (x.dim(0) == 0) return;
  if (w.dtype == DType::kF32) {
    SkinnyImpl<float>(x, w, nullptr, bias, y);
  } else {
    SkinnyImpl<uint16_t>(x, w, nullptr, bias, y);
  }
}

void MatMulInt8(const Tensor& x, const Tensor& w, const Tensor& scale, const Tensor* bias,
                const Tensor& y) {
  CheckShapes(x, w, bias, y, DType::kI8, DType::kI8);
  JAMBA_CHECK(scale.dtype == DType::kF32 && scale.numel() == w.dim(0) && scale.contiguous());
  if (x.dim(0) == 0) return;
  SkinnyImpl<int8_t>(x, w, &scale, bias, y);
}

void MatMulBlas(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  CheckShapes(x, w, bias, y);
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  if (n == 0) return;
  if (w.dtype == DType::kF32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, x.ptr<float>(), x.ld(),
                w.ptr<float>(), w.ld(), 0.0f, y.ptr<float>(), y.ld());
  } else {
    const int64_t panels = (m + kPanelRows - 1) / kPanelRows;
#pragma omp parallel
    {
      std::vector<float> panel(static_cast<size_t>(kPanelRows) * k);
#pragma omp for schedule(dynamic, 1)
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t r0 = p * kPanelRows, rows = std::min<int64_t>(kPanelRows, m - r0);
        for (int64_t r = 0; r < rows; ++r) {
          const uint16_t* src = w.ptr<uint16_t>() + (r0 + r) * w.ld();
          float* dst = panel.data() + r * k;
          int64_t j = 0;
          for (; j + 8 <= k; j += 8) _mm256_storeu_ps(dst + j, Load8(src + j));
          for (; j < k; ++j) dst[j] = Bf16ToF32(src[j]);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, k, 1.0f, x.ptr<float>(),
                    x.ld(), panel.data(), k, 0.0f, y.ptr<float>() + r0, y.ld());
      }
    }
  }
  if (bias != nullptr) {
    const float* b = bias->ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      float* yr = y.ptr<float>() + i * y.ld();
      for (int64_t j = 0; j < m; ++j) yr[j] += b[j];
    }
  }
}

void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            bool batch_invariant) {
  if (batch_invariant || x.dim(0) <= kSkinnyThreshold) {
    MatMulSkinny(x, w, bias, y);
  } else {
    MatMulBlas(x, w, bias, y);
  }
}

}  // namespace jamba::cpu
