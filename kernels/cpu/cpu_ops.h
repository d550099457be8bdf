// Free-function CPU kernels behind CpuBackend. Each has the contract of the Backend method of
// the same name (kernels/backend.h); they are exposed separately so benchmarks and tests can
// call a specific variant.
#ifndef JAMBA_KERNELS_CPU_CPU_OPS_H_
#define JAMBA_KERNELS_CPU_CPU_OPS_H_

#include "kernels/backend.h"

namespace jamba::cpu {

void Embed(const Tensor& table, const Tensor& ids, const Tensor& out);
void RmsNorm(const Tensor& x, const Tensor* weight, float eps, const Tensor& out);
void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out);
void Add(const Tensor& a, const Tensor& acc);
void Zero(const Tensor& t);
void GatherRows(const Tensor& x, const Tensor& idx, const Tensor& out);
void ScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                      const Tensor& out);
void MoeRoute(const Tensor& logits, int k, bool renormalize, const Tensor& ids,
              const Tensor& weights);
void SampleRows(const Tensor& x, absl::Span<const RowSampling> params, const Tensor& out);
void MoeGroup(const Tensor& ids, const Tensor& weights, const Tensor& token, const Tensor& scale,
              const Tensor& counts);
void Rope(const BatchLayout& layout, const Tensor& x, int64_t head_dim, double theta);

// batch_invariant: use the fixed-order dot kernel for every shape (see matmul.cc).
void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            bool batch_invariant = true);
void MatMulInt8(const Tensor& x, const Tensor& w, const Tensor& scale, const Tensor* bias,
                const Tensor& y);
// Variants, for benchmarks and parity tests: the hand-written register-blocked kernel (reads
// each weight row once for up to kMaxSkinnyTokens tokens) and the BLAS-backed path.
void MatMulSkinny(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
void MatMulBlas(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
// Row count at or below which MatMul uses the skinny kernel.
int SkinnyThreshold();

void MambaConv(const BatchLayout& layout, const Tensor& x, const Tensor& w, const Tensor* bias,
               const Tensor& state, const Tensor& out);
void MambaScan(const BatchLayout& layout, const MambaScanArgs& args);
void Attention(const BatchLayout& layout, const AttentionArgs& args);

}  // namespace jamba::cpu

#endif  // JAMBA_KERNELS_CPU_CPU_OPS_H_
