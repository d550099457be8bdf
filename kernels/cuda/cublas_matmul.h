// y = x w^T (+ bias) with cuBLAS, for CudaBackend::MatMul (contract in kernels/backend.h).
//
// f32 weights: one cublasSgemm in full f32 (CUBLAS_DEFAULT_MATH: no TF32).
// bf16 weights: cuBLAS has no f32 x bf16 GEMM (cublasGemmEx wants A and B of one type), and
// rounding the f32 activations to bf16 would lose ~3 decimal digits. So x is split into two
// bf16 halves, x = hi + lo with hi = bf16(x), lo = bf16(x - hi) (~16 significant bits), and
// cublasGemmEx (bf16 inputs, CUBLAS_COMPUTE_32F, f32 output) computes w hi and w lo:
//  - up to kFusedSplitMaxRows rows, as ONE GEMM over the 2n stacked rows into scratch (the
//    weights, which dominate decode time, are read once), then a kernel adds the halves;
//  - above it, as two GEMMs accumulating into y (beta = 1), which needs no [2n, m] scratch.
// Products of bf16 values are exact in f32, so the result matches an f32 GEMM of the bf16
// weights to ~2^-17 relative per term, plus f32 accumulation error.
//
// cuBLAS may choose its kernel by shape, so unlike the CPU backend the result of one row can
// depend on the batch in the last bits.
#ifndef JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_
#define JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace jamba::cuda {

inline constexpr int64_t kFusedSplitMaxRows = 64;

// Bytes of device scratch CublasMatMul needs for these operands (0 for f32 weights).
size_t MatMulScratchBytes(const Tensor& x, const Tensor& w);

// Enqueues y = x w^T (+ bias) on the handle's stream. x [n, k] f32, w [m, k] f32|bf16 (row
// stride >= k), bias: device [m] f32 or nullptr, y [n, m] f32; all row-strided views allowed;
// y must not alias x. scratch: device memory of MatMulScratchBytes(x, w) bytes, 256-byte
// aligned, unused by other work until this product has run (stream order suffices).
// Shape/dtype mismatches abort; cuBLAS and launch failures are returned.
absl::Status CublasMatMul(cublasHandle_t handle, cudaStream_t stream, const Tensor& x,
                          const Tensor& w, const float* bias, const Tensor& y, void* scratch);

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_
