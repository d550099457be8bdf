// The emulator's cuBLAS GEMMs: a straightforward f32-accumulating product (8 partial sums per
// dot product, so the compiler vectorises it), after the checks cuBLAS makes.
#include <cublas_v2.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cuda/emulator/emulated_device.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace jamba::cuda_emu {
namespace {

// One operand: element (i, l) of op(X), with X of dtype f32 or bf16.
struct Operand {
  const void* data;
  cudaDataType_t type;
  int64_t ld;
  bool transposed;
  float At(int64_t i, int64_t l) const {
    const int64_t index = transposed ? l + i * ld : i + l * ld;
    if (type == CUDA_R_32F) return static_cast<const float*>(data)[index];
    const uint32_t bits = uint32_t{static_cast<const uint16_t*>(data)[index]} << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
  // Bytes from the first to one past the last element of a stored rows x cols matrix.
  size_t Span(int64_t rows, int64_t cols) const {
    const size_t elem = type == CUDA_R_32F ? 4 : 2;
    return static_cast<size_t>((cols - 1) * ld + rows) * elem;
  }
};

// Whether an operand's stored matrix (rows x cols before op) lies in device memory.
void CheckOperand(const char* name, const Operand& x, int64_t rows, int64_t cols) {
  if (rows > 0 && cols > 0 && !InDeviceAllocation(x.data, x.Span(rows, cols))) {
    std::fprintf(stderr, "CUDA emulator: cuBLAS GEMM operand %s is not in device memory\n", name);
    std::abort();
  }
}

// C = alpha op(A) op(B) + beta C; A and B are not read when k is 0 or alpha is 0, nor C
// when beta is 0 (as BLAS specifies).
void Compute(int64_t m, int64_t n, int64_t k, float alpha, const Operand& a, const Operand& b,
             float beta, float* c, int64_t ldc) {
  if (k == 0 || alpha == 0.0f) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        float& out = c[i + j * ldc];
        out = beta == 0.0f ? 0.0f : beta * out;
      }
    return;
  }
  // op(A) as rows of k f32, op(B) as columns of k f32: every dot product reads contiguously.
  std::vector<float> ar(static_cast<size_t>(m) * k), bc(static_cast<size_t>(n) * k);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t l = 0; l < k; ++l) ar[i * k + l] = a.At(i, l);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t l = 0; l < k; ++l) bc[j * k + l] = b.At(l, j);
  for (int64_t j = 0; j < n; ++j) {
    const float* bj = bc.data() + j * k;
    for (int64_t i = 0; i < m; ++i) {
      const float* ai = ar.data() + i * k;
      float part[8] = {};
      int64_t l = 0;
      for (; l + 8 <= k; l += 8) {
        for (int u = 0; u < 8; ++u) part[u] += ai[l + u] * bj[l + u];
      }
      for (; l < k; ++l) part[0] += ai[l] * bj[l];
      const float dot =
          ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      float& out = c[i + j * ldc];
      out = beta == 0.0f ? alpha * dot : alpha * dot + beta * out;
    }
  }
}

cublasStatus_t Gemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const Operand& a, const Operand& b, float beta, float* c,
                    int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  // CUBLAS_OP_C is the transpose for real types.
  const auto valid_op = [](cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
  };
  if (!valid_op(ta) || !valid_op(tb) || m < 0 || n < 0 || k < 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // Stored shapes: A is m x k (N) or k x m (T); B is k x n (N) or n x k (T).
  const int64_t a_rows = a.transposed ? k : m, a_cols = a.transposed ? m : k;
  const int64_t b_rows = b.transposed ? n : k, b_cols = b.transposed ? k : n;
  if (a.ld < (a_rows > 1 ? a_rows : 1) || b.ld < (b_rows > 1 ? b_rows : 1) ||
      ldc < (m > 1 ? m : 1)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (!InDeviceAllocation(c, static_cast<size_t>((int64_t{n} - 1) * ldc + m) * 4)) {
    std::fprintf(stderr, "CUDA emulator: cuBLAS GEMM output is not in device memory\n");
    std::abort();
  }
  if (k > 0 && alpha != 0.0f) {
    CheckOperand("A", a, a_rows, a_cols);
    CheckOperand("B", b, b_rows, b_cols);
  }
  // Runs in stream order (alpha and beta were read at the call, as in host pointer mode).
  Enqueue([=] { Compute(m, n, k, alpha, a, b, beta, c, ldc); });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace jamba::cuda_emu

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!jamba::cuda_emu::StreamValid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

namespace jamba::cuda_emu {
namespace {

// The statuses the emulator returns, with cuBLAS's name and text for each.
struct StatusText {
  cublasStatus_t status;
  const char* name;
  const char* text;
};
constexpr StatusText kStatusTexts[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "the operation completed successfully"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED",
     "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE",
     "an invalid numeric value was used as an argument"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED",
     "the GPU program failed to execute"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED",
     "the functionality requested is not supported"},
};
constexpr StatusText kUnknownStatus = {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_UNKNOWN",
                                       "unknown cuBLAS status"};

const StatusText& FindStatusText(cublasStatus_t status) {
  for (const StatusText& t : kStatusTexts) {
    if (t.status == status) return t;
  }
  return kUnknownStatus;
}

}  // namespace
}  // namespace jamba::cuda_emu

const char* cublasGetStatusName(cublasStatus_t status) {
  return jamba::cuda_emu::FindStatusText(status).name;
}

const char* cublasGetStatusString(cublasStatus_t status) {
  return jamba::cuda_emu::FindStatusText(status).text;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const jamba::cuda_emu::Operand a{A, CUDA_R_32F, lda, transa != CUBLAS_OP_N};
  const jamba::cuda_emu::Operand b{B, CUDA_R_32F, ldb, transb != CUBLAS_OP_N};
  return jamba::cuda_emu::Gemm(handle, transa, transb, m, n, k, *alpha, a, b, *beta, C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C,
                            cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const bool inputs_ok = (Atype == CUDA_R_32F || Atype == CUDA_R_16BF) && Btype == Atype;
  if (!inputs_ok || Ctype != CUDA_R_32F ||
      (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_FAST_TF32) ||
      algo != CUBLAS_GEMM_DEFAULT) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const jamba::cuda_emu::Operand a{A, Atype, lda, transa != CUBLAS_OP_N};
  const jamba::cuda_emu::Operand b{B, Btype, ldb, transb != CUBLAS_OP_N};
  return jamba::cuda_emu::Gemm(handle, transa, transb, m, n, k, *static_cast<const float*>(alpha),
                               a, b, *static_cast<const float*>(beta), static_cast<float*>(C), ldc);
}
