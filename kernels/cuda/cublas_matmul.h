// y = x w^T (+ bias) with cuBLAS, for CudaBackend::MatMul (contract in kernels/backend.h).
//
// f32 weights: one cublasSgemm in full f32 (CUBLAS_DEFAULT_MATH: no TF32).
// bf16 weights: cuBLAS has no f32 x bf16 GEMM (cublasGemmEx wants A and B of one type), and
// rounding the f32 activations to bf16 would lose ~3 decimal digits. So x is split exactly
// into three bf16 terms, x = t0 + t1 + t2 (LaunchSplitBf16: 8 + 8 + 8 significant bits; two
// terms would keep only ~16 of x's 24 bits, which the golden bf16 tests measure), and
// cublasGemmEx (bf16 inputs, CUBLAS_COMPUTE_32F, f32 output) computes w t_i:
//  - up to kFusedSplitMaxRows rows, as ONE GEMM over the 3n stacked rows into scratch (the
//    weights, which dominate decode time, are read once), then a kernel sums the parts;
//  - above it, as three GEMMs accumulating into y (beta = 1), which needs no [3n, m] scratch
//    (prefill is compute-bound on the tensor cores: 3x the bf16 FLOPs of one GEMM).
// Products of bf16 values are exact in f32, so the result is an f32 GEMM of the bf16 weights
// up to the f32 accumulation order.
// With MatMulPrecision::kBf16, x is rounded to bf16 (one term) and one GEMM writes y: the
// product of the rounded x, a third of the tensor-core work.
//
// cuBLAS may choose its kernel by shape, so unlike the CPU backend the result of one row can
// depend on the batch in the last bits.
#ifndef JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_
#define JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace jamba::cuda {

inline constexpr int64_t kFusedSplitMaxRows = 64;

// Bytes of device scratch CublasMatMul needs for these operands (0 for f32 weights).
size_t MatMulScratchBytes(const Tensor& x, const Tensor& w, MatMulPrecision precision);

// Enqueues y = x w^T (+ bias) on the handle's stream. x [n, k] f32, w [m, k] f32|bf16 (row
// stride >= k), bias: device [m] f32 or nullptr, y [n, m] f32; all row-strided views allowed;
// y must not alias x. scratch: device memory of MatMulScratchBytes(x, w) bytes, 256-byte
// aligned, unused by other work until this product has run (stream order suffices).
// x_split: bf16 weights only; the scratch already holds x's split, left there by an earlier
// call with the same x, precision and scratch on this stream (products of one x with several
// weight matrices, as MatMulInt8's chunks, split it once).
// Shape/dtype mismatches abort; cuBLAS and launch failures are returned.
absl::Status CublasMatMul(cublasHandle_t handle, cudaStream_t stream, const Tensor& x,
                          const Tensor& w, const float* bias, const Tensor& y, void* scratch,
                          MatMulPrecision precision, bool x_split = false);

}  // namespace jamba::cuda

#endif  // JAMBA_KERNELS_CUDA_CUBLAS_MATMUL_H_
