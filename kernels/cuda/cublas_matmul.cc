#include "kernels/cuda/cublas_matmul.h"

#include <climits>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

constexpr size_t kAlign = 256;

size_t AlignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

struct Dims {
  int64_t n, k, m;
};

Dims CheckOperands(const Tensor& x, const Tensor& w) {
  JAMBA_CHECK(x.device == Device::kCuda && w.device == Device::kCuda);
  JAMBA_CHECK(x.dtype == DType::kF32 && x.ndim == 2 && x.stride[1] == 1);
  JAMBA_CHECK(w.ndim == 2 && w.stride[1] == 1);
  JAMBA_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kBF16);
  JAMBA_CHECK(w.shape[1] == x.shape[1]);
  return Dims{x.shape[0], x.shape[1], w.shape[0]};
}

int Terms(MatMulPrecision precision) {
  return precision == MatMulPrecision::kBf16 ? 1 : kBf16SplitTerms;
}

// Whether the terms' products are one GEMM over the stacked terms, summed by a kernel.
bool Fused(const Dims& d, int terms) { return terms > 1 && d.n <= kFusedSplitMaxRows; }

// Sizes of the bf16 split [terms n, k] and of the fused partial products [3n, m] f32.
size_t SplitBytes(const Dims& d, int terms) {
  return AlignUp(static_cast<size_t>(terms * d.n * d.k) * 2);
}
size_t PartsBytes(const Dims& d) {
  return static_cast<size_t>(kBf16SplitTerms * d.n * d.m) * sizeof(float);
}

absl::Status CublasError(const char* what, cublasStatus_t s) {
  return absl::InternalError(absl::StrCat("cuBLAS ", what, " failed: ", cublasGetStatusName(s),
                                          " (", cublasGetStatusString(s), ")"));
}

absl::Status LaunchError(const char* what, cudaError_t e) {
  return absl::InternalError(absl::StrCat("CUDA ", what, " failed: ", cudaGetErrorString(e)));
}

// cuBLAS is column-major: the row-major y [n, m] is the column-major y^T (m x n, ld y.ld), and
// y^T = w x^T, with the row-major w [m, k] read as column-major k x m transposed.
cublasStatus_t GemmBf16(cublasHandle_t handle, const Dims& d, int64_t rows, const Tensor& w,
                        const uint16_t* xb, float beta, float* y, int64_t ldy) {
  const float alpha = 1.0f;
  return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(d.m),
                      static_cast<int>(rows), static_cast<int>(d.k), &alpha, w.data, CUDA_R_16BF,
                      static_cast<int>(w.stride[0]), xb, CUDA_R_16BF, static_cast<int>(d.k), &beta,
                      y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

}  // namespace

size_t MatMulScratchBytes(const Tensor& x, const Tensor& w, MatMulPrecision precision) {
  const Dims d = CheckOperands(x, w);
  if (w.dtype == DType::kF32) return 0;
  const int terms = Terms(precision);
  return SplitBytes(d, terms) + (Fused(d, terms) ? PartsBytes(d) : 0);
}

absl::Status CublasMatMul(cublasHandle_t handle, cudaStream_t stream, const Tensor& x,
                          const Tensor& w, const float* bias, const Tensor& y, void* scratch,
                          MatMulPrecision precision, bool x_split) {
  const Dims d = CheckOperands(x, w);
  const int terms = Terms(precision);
  JAMBA_CHECK(y.device == Device::kCuda && y.dtype == DType::kF32 && y.ndim == 2);
  JAMBA_CHECK(y.stride[1] == 1 && y.shape[0] == d.n && y.shape[1] == d.m);
  JAMBA_CHECK(y.data != x.data);
  // cuBLAS takes int sizes and leading dimensions.
  JAMBA_CHECK(kBf16SplitTerms * d.n <= INT_MAX && d.k <= INT_MAX && d.m <= INT_MAX);
  JAMBA_CHECK(x.stride[0] <= INT_MAX && w.stride[0] <= INT_MAX && y.stride[0] <= INT_MAX);
  if (d.n == 0 || d.m == 0) return absl::OkStatus();
  const int64_t ldx = d.n > 1 ? x.stride[0] : d.k;
  const int64_t ldw = d.m > 1 ? w.stride[0] : d.k;
  const int64_t ldy = d.n > 1 ? y.stride[0] : d.m;
  JAMBA_CHECK(ldx >= d.k && ldw >= d.k && ldy >= d.m);
  if (d.k == 0) {  // empty sum
    cudaError_t e = bias != nullptr ? LaunchBroadcastRows(bias, y, stream) : LaunchZero(y, stream);
    return e == cudaSuccess ? absl::OkStatus() : LaunchError("matmul fill", e);
  }

  if (w.dtype == DType::kF32) {
    float beta = 0.0f;
    if (bias != nullptr) {
      cudaError_t e = LaunchBroadcastRows(bias, y, stream);
      if (e != cudaSuccess) return LaunchError("bias broadcast", e);
      beta = 1.0f;
    }
    const float alpha = 1.0f;
    cublasStatus_t s = cublasSgemm(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(d.m), static_cast<int>(d.n),
        static_cast<int>(d.k), &alpha, w.ptr<float>(), static_cast<int>(ldw), x.ptr<float>(),
        static_cast<int>(ldx), &beta, y.ptr<float>(), static_cast<int>(ldy));
    return s == CUBLAS_STATUS_SUCCESS ? absl::OkStatus() : CublasError("Sgemm", s);
  }

  JAMBA_CHECK(scratch != nullptr);
  Tensor wv = w;
  wv.stride[0] = ldw;
  // [terms n, k]: the terms' rows, term by term.
  uint16_t* split = static_cast<uint16_t*>(scratch);
  cudaError_t e = x_split ? cudaSuccess : LaunchSplitBf16(x, terms, split, stream);
  if (e != cudaSuccess) return LaunchError("bf16 split", e);

  if (Fused(d, terms)) {
    float* parts = reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + SplitBytes(d, terms));
    cublasStatus_t s = GemmBf16(handle, d, kBf16SplitTerms * d.n, wv, split, 0.0f, parts, d.m);
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("GemmEx (bf16, stacked)", s);
    e = LaunchSumSplitParts(parts, bias, y, stream);
    return e == cudaSuccess ? absl::OkStatus() : LaunchError("sum of split parts", e);
  }

  float beta = 0.0f;
  if (bias != nullptr) {
    e = LaunchBroadcastRows(bias, y, stream);
    if (e != cudaSuccess) return LaunchError("bias broadcast", e);
    beta = 1.0f;
  }
  for (int term = 0; term < terms; ++term) {
    cublasStatus_t s = GemmBf16(handle, d, d.n, wv, split + term * d.n * d.k,
                                term == 0 ? beta : 1.0f, y.ptr<float>(), ldy);
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("GemmEx (bf16, one term)", s);
  }
  return absl::OkStatus();
}

}  // namespace jamba::cuda
