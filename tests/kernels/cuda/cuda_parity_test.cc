// CPU/CUDA parity of every op the CUDA backend implements: the same random inputs (fixed
// seeds) go through CreateCpuBackend() and CreateCudaBackend(0), and the outputs are compared.
// Skipped when no CUDA device is present.
//
// Tolerances, and why:
//  - Embed, GatherRows, Zero, Add: exact (copies, bf16 widening, one f32 addition).
//  - MatMul: both sides are checked against a double reference, and against each other, with
//    tol = (2k * 2^-23 [+ 2^-16 for bf16 weights]) * sum_j |x_j w_j| (+ |b|). 2k * 2^-23 is four
//    times the worst-case bound k * 2^-24 of f32 summation in any order (cuBLAS picks its own
//    order, and tensor-core adders may truncate); 2^-16 covers the GPU's bf16 hi/lo split of x,
//    whose residual is at most 2^-18 |x| (kernels/cuda/cublas_matmul.h).
//  - RmsNorm: 3e-6 relative (+1e-7 absolute): the GPU sums the squares in f32 (a few terms per
//    thread, then a tree of depth 10), the CPU in f64: about 15 ulp in the sum, half of it in
//    the scale, plus sqrt/div/mul roundings, ~12 ulp (7e-7) in all; 4x margin.
//  - SiluMul: 2e-6 relative (+1e-7): CUDA expf is within 2 ulp, glibc's within 1, then an
//    addition, a division and a multiplication: <= 6 ulp (7e-7) apart.
//  - ScatterAddScaled: per element (contributions + 1) * 2^-23 * (|initial| + sum |s r|): each
//    side rounds every update once, possibly fused (FMA) on one side and not the other.
//  - Rope: 2e-6 absolute for inputs in [-1, 1]: the angle is the same f32 value on both sides
//    (host-computed inverse frequencies); CUDA sincosf is within 2 ulp, then two products and
//    a sum (possibly fused).
//  - SampleRows: token ids exact (see SampledRowsEqualCpu for why rounding does not show).
//  - MoeRoute: ids exact (random logits have no near-ties; exact ties are tested separately),
//    weights 3e-6 relative: expf (<= 2 ulp) in each term and in the sum, the division and the
//    renormalisation, <= ~12 ulp (1.5e-6) apart.
#include <cmath>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace jamba {
namespace {

using cuda_test::CudaTest;
using cuda_test::kSentinel;
using cuda_test::RandomVec;
using cuda_test::RefBf16ToF32;
using cuda_test::TruncToBf16;
using cuda_test::Twin;

class CudaParityTest : public CudaTest {};

// ---- Embed, GatherRows, Add, Zero (exact) -----------------------------------------------

TEST_F(CudaParityTest, EmbedF32AndBf16IntoStridedRows) {
  const int64_t vocab = 50, h = 300, n = 7;
  const std::vector<int32_t> ids = {3, 0, 49, 3, 17, 49, 8};
  const Twin id = TwinI32(ids, {n});
  const std::vector<float> table = RandomVec(&rng_, vocab * h);
  std::vector<uint16_t> table_bf16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table_bf16[i] = TruncToBf16(table[i]);
  for (bool bf16 : {false, true}) {
    const Twin tab = bf16 ? TwinBf16(table_bf16, {vocab, h}) : TwinF32(table, {vocab, h});
    const Twin full = TwinStrided(std::vector<float>(n * h, kSentinel), n, h, h + 5, 2);
    const Twin out = full.Cols(2, h);
    cpu_->Embed(tab.cpu, id.cpu, out.cpu);
    gpu_->Embed(tab.gpu, id.gpu, out.gpu);
    std::vector<float> c, g;
    ReadStrided(full, 2, h, &c, &g);
    EXPECT_EQ(g, c) << (bf16 ? "bf16" : "f32");
    // Independent of the CPU: row i is the table row, widened exactly.
    for (int64_t j = 0; j < h; ++j) {
      const float want = bf16 ? RefBf16ToF32(table_bf16[ids[4] * h + j]) : table[ids[4] * h + j];
      EXPECT_EQ(g[4 * (h + 5) + 2 + j], want);
    }
  }
}

TEST_F(CudaParityTest, GatherRowsWithRepeats) {
  const int64_t n = 9, d = 70;
  const Twin x = TwinF32(RandomVec(&rng_, n * d), {n, d});
  const std::vector<int32_t> idx = {8, 0, 8, 4, 4, 1};
  const Twin id = TwinI32(idx, {6});
  const Twin out = TwinF32(std::vector<float>(6 * d, kSentinel), {6, d});
  cpu_->GatherRows(x.cpu, id.cpu, out.cpu);
  gpu_->GatherRows(x.gpu, id.gpu, out.gpu);
  EXPECT_EQ(Read(gpu_.get(), out.gpu), Read(cpu_.get(), out.cpu));
}

TEST_F(CudaParityTest, AddIntoStridedAccumulator) {
  const int64_t n = 70000, d = 3;  // more rows than one grid dimension holds
  const std::vector<float> a = RandomVec(&rng_, n * d), acc = RandomVec(&rng_, n * d);
  const Twin ta = TwinF32(a, {n, d});
  const Twin full = TwinStrided(acc, n, d, d + 2, 1);
  cpu_->Add(ta.cpu, full.cpu.Cols(1, d));
  gpu_->Add(ta.gpu, full.gpu.Cols(1, d));
  std::vector<float> c, g;
  ReadStrided(full, 1, d, &c, &g);
  EXPECT_EQ(g, c);
  EXPECT_EQ(g[5 * (d + 2) + 1 + 2], acc[5 * d + 2] + a[5 * d + 2]);
}

TEST_F(CudaParityTest, ZeroStridedAndContiguous) {
  const int64_t n = 6, d = 33;
  const Twin full = TwinStrided(RandomVec(&rng_, n * d), n, d, d + 4, 3);
  gpu_->Zero(full.gpu.Cols(3, d));
  std::vector<float> c, g;
  ReadStrided(full, 3, d, &c, &g);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) EXPECT_EQ(g[i * (d + 4) + 3 + j], 0.0f);
  const Twin dense = TwinF32(std::vector<float>(n * d, NAN), {n, d});
  gpu_->Zero(dense.gpu);
  EXPECT_EQ(Read(gpu_.get(), dense.gpu), std::vector<float>(n * d, 0.0f));
}

// ---- RmsNorm, SiluMul -------------------------------------------------------------------

void ExpectRelClose(const std::vector<float>& cpu, const std::vector<float>& gpu, double rel,
                    double abs, const char* what) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (cpu[i] == kSentinel) {
      EXPECT_EQ(gpu[i], kSentinel) << what << " at " << i;
      continue;
    }
    EXPECT_NEAR(gpu[i], cpu[i], rel * std::fabs(cpu[i]) + abs) << what << " at " << i;
  }
}

// RmsNormGroups: Jamba's dt/B/C split (dt_rank 256, N 16, weighted) and FalconMamba's
// (weightless), in place on a strided view, with RmsNorm's tolerance.
TEST_F(CudaParityTest, RmsNormGroupsMambaSplits) {
  const float eps = 1e-6f;
  for (bool weighted : {true, false}) {
    const int64_t n = 7, r = 256, ns = 16, d = r + 2 * ns;
    const std::vector<float> x = RandomVec(&rng_, n * d, -3.0f, 3.0f);
    const Twin wr = TwinF32(RandomVec(&rng_, r, 0.5f, 1.5f), {r});
    const Twin wb = TwinF32(RandomVec(&rng_, ns, 0.5f, 1.5f), {ns});
    const Twin wc = TwinF32(RandomVec(&rng_, ns, 0.5f, 1.5f), {ns});
    const Twin t = TwinStrided(x, n, d, d + 4, 3);
    const int64_t widths[] = {r, ns, ns};
    const Tensor* cw[] = {weighted ? &wr.cpu : nullptr, weighted ? &wb.cpu : nullptr,
                          weighted ? &wc.cpu : nullptr};
    const Tensor* gw[] = {weighted ? &wr.gpu : nullptr, weighted ? &wb.gpu : nullptr,
                          weighted ? &wc.gpu : nullptr};
    cpu_->RmsNormGroups(t.cpu.Cols(3, d), widths, cw, eps);
    gpu_->RmsNormGroups(t.gpu.Cols(3, d), widths, gw, eps);
    std::vector<float> c, g;
    ReadStrided(t, 3, d, &c, &g);
    ExpectRelClose(c, g, 3e-6, 1e-7, weighted ? "weighted" : "weightless");
  }
}

TEST_F(CudaParityTest, RmsNormWeightedUnweightedAndInPlace) {
  const float eps = 1e-6f;
  for (int64_t d : {64, 1000, 4100}) {
    const int64_t n = 5;
    const std::vector<float> x = RandomVec(&rng_, n * d, -3.0f, 3.0f);
    const Twin w = TwinF32(RandomVec(&rng_, d, 0.5f, 1.5f), {d});
    const Twin tx = TwinF32(x, {n, d});
    // Weighted, into a strided output.
    const Twin full = TwinStrided(std::vector<float>(n * d, 0.0f), n, d, d + 3, 1);
    cpu_->RmsNorm(tx.cpu, &w.cpu, eps, full.cpu.Cols(1, d));
    gpu_->RmsNorm(tx.gpu, &w.gpu, eps, full.gpu.Cols(1, d));
    std::vector<float> c, g;
    ReadStrided(full, 1, d, &c, &g);
    ExpectRelClose(c, g, 3e-6, 1e-7, "weighted");
    // Weightless, in place on a strided view.
    const Twin inplace = TwinStrided(x, n, d, d + 2, 2);
    cpu_->RmsNorm(inplace.cpu.Cols(2, d), nullptr, eps, inplace.cpu.Cols(2, d));
    gpu_->RmsNorm(inplace.gpu.Cols(2, d), nullptr, eps, inplace.gpu.Cols(2, d));
    ReadStrided(inplace, 2, d, &c, &g);
    ExpectRelClose(c, g, 3e-6, 1e-7, "in place");
  }
}

TEST_F(CudaParityTest, SiluMulStridedAndAliased) {
  const int64_t n = 11, d = 515;
  const std::vector<float> gate = RandomVec(&rng_, n * d, -10.0f, 10.0f);
  const std::vector<float> up = RandomVec(&rng_, n * d, -2.0f, 2.0f);
  // gate and up as column views of one [n, 2d] matrix (as a fused gate_up projection).
  std::vector<float> fused(n * 2 * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      fused[i * 2 * d + j] = gate[i * d + j];
      fused[i * 2 * d + d + j] = up[i * d + j];
    }
  const Twin gu = TwinF32(fused, {n, 2 * d});
  const Twin out = TwinF32(std::vector<float>(n * d, 0.0f), {n, d});
  cpu_->SiluMul(gu.cpu.Cols(0, d), gu.cpu.Cols(d, d), out.cpu);
  gpu_->SiluMul(gu.gpu.Cols(0, d), gu.gpu.Cols(d, d), out.gpu);
  ExpectRelClose(Read(cpu_.get(), out.cpu), Read(gpu_.get(), out.gpu), 2e-6, 1e-7, "silu_mul");
  // out aliasing gate.
  cpu_->SiluMul(gu.cpu.Cols(0, d), gu.cpu.Cols(d, d), gu.cpu.Cols(0, d));
  gpu_->SiluMul(gu.gpu.Cols(0, d), gu.gpu.Cols(d, d), gu.gpu.Cols(0, d));
  ExpectRelClose(Read(cpu_.get(), gu.cpu), Read(gpu_.get(), gu.gpu), 2e-6, 1e-7, "aliased");
}

// ---- MatMul ----------------------------------------------------------------------------

struct MatMulCase {
  int64_t n, k, m;
  bool bf16, bias, strided;
};

class CudaMatMulTest : public CudaTest {
 protected:
  void Run(const MatMulCase& c) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " k=" << c.k << " m=" << c.m << " bf16="
                                    << c.bf16 << " bias=" << c.bias << " strided=" << c.strided);
    const std::vector<float> x = RandomVec(&rng_, c.n * c.k);
    std::vector<float> w = RandomVec(&rng_, c.m * c.k);
    std::vector<uint16_t> w_bf16(w.size());
    if (c.bf16) {
      for (size_t i = 0; i < w.size(); ++i) {
        w_bf16[i] = TruncToBf16(w[i]);
        w[i] = RefBf16ToF32(w_bf16[i]);  // the reference uses the values actually stored
      }
    }
    const std::vector<float> b = RandomVec(&rng_, c.m);
    const Twin tw = c.bf16 ? TwinBf16(w_bf16, {c.m, c.k}) : TwinF32(w, {c.m, c.k});
    const Twin tb = TwinF32(b, {c.m});
    // x as a column view (as of a fused projection), y as a column view with a margin.
    const int64_t x_ld = c.strided ? c.k + 5 : c.k, x0 = c.strided ? 2 : 0;
    const int64_t y_ld = c.strided ? c.m + 3 : c.m, y0 = c.strided ? 1 : 0;
    const Twin tx = TwinStrided(x, c.n, c.k, x_ld, x0);
    const Twin ty = TwinStrided(std::vector<float>(c.n * c.m, NAN), c.n, c.m, y_ld, y0);
    cpu_->MatMul(tx.cpu.Cols(x0, c.k), tw.cpu, c.bias ? &tb.cpu : nullptr, ty.cpu.Cols(y0, c.m));
    gpu_->MatMul(tx.gpu.Cols(x0, c.k), tw.gpu, c.bias ? &tb.gpu : nullptr, ty.gpu.Cols(y0, c.m));
    std::vector<float> cpu, gpu;
    ReadStrided(ty, y0, c.m, &cpu, &gpu);
    const double gamma = 2.0 * c.k * std::ldexp(1.0, -23) + (c.bf16 ? std::ldexp(1.0, -16) : 0);
    for (int64_t i = 0; i < c.n; ++i) {
      for (int64_t j = 0; j < c.m; ++j) {
        double ref = c.bias ? b[j] : 0.0, mag = c.bias ? std::fabs(b[j]) : 0.0;
        for (int64_t l = 0; l < c.k; ++l) {
          ref += static_cast<double>(x[i * c.k + l]) * w[j * c.k + l];
          mag += std::fabs(static_cast<double>(x[i * c.k + l]) * w[j * c.k + l]);
        }
        const double tol = gamma * mag;
        const float g = gpu[i * y_ld + y0 + j], cv = cpu[i * y_ld + y0 + j];
        ASSERT_NEAR(g, ref, tol) << "vs double at (" << i << ", " << j << ")";
        ASSERT_NEAR(g, cv, 2 * tol) << "vs CPU at (" << i << ", " << j << ")";
      }
    }
  }
};

TEST_F(CudaMatMulTest, F32AndBf16AcrossBatchSizes) {
  // n = 64 and 65 straddle the bf16 path's switch from one stacked GEMM to two GEMMs.
  for (int64_t n : {1, 3, 64, 65, 130}) {
    for (bool bf16 : {false, true}) {
      Run({n, 96, 72, bf16, /*bias=*/false, /*strided=*/false});
      Run({n, 130, 33, bf16, /*bias=*/true, /*strided=*/true});
    }
  }
}

TEST_F(CudaMatMulTest, ReusesScratchAcrossShapes) {
  // A large product then a small one (scratch grows, then is reused), then large again.
  Run({65, 256, 300, true, true, false});
  Run({2, 40, 24, true, false, true});
  Run({200, 64, 96, true, false, false});
}

// MatMulInt8: the GEMV kernel (n <= 8) and the bf16-conversion + cuBLAS path (n > 8), against
// a double loop over the dequantised weights and against the CPU, with the bf16 path's
// tolerance (the int8 values are exact in bf16; x is split into hi/lo halves).
TEST_F(CudaParityTest, MatMulInt8BothPaths) {
  std::uniform_int_distribution<int> qd(-127, 127);
  for (int64_t n : {1, 4, 8, 9, 70}) {
    for (int64_t k : {64, 130}) {  // 130: not a multiple of 4, the kernel's scalar loop
      SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k);
      const int64_t m = 45;
      const std::vector<float> x = RandomVec(&rng_, n * k);
      std::vector<int8_t> q(m * k);
      for (int8_t& v : q) v = static_cast<int8_t>(qd(rng_));
      const std::vector<float> scale = RandomVec(&rng_, m, 0.001f, 0.02f);
      const std::vector<float> b = RandomVec(&rng_, m);
      const Twin tw{Put(cpu_.get(), q.data(), DType::kI8, {m, k}),
                    Put(gpu_.get(), q.data(), DType::kI8, {m, k})};
      const Twin ts = TwinF32(scale, {m}), tb = TwinF32(b, {m}), tx = TwinF32(x, {n, k});
      const Twin ty = TwinStrided(std::vector<float>(n * m, NAN), n, m, m + 3, 1);
      cpu_->MatMulInt8(tx.cpu, tw.cpu, ts.cpu, &tb.cpu, ty.cpu.Cols(1, m));
      gpu_->MatMulInt8(tx.gpu, tw.gpu, ts.gpu, &tb.gpu, ty.gpu.Cols(1, m));
      std::vector<float> cpu, gpu;
      ReadStrided(ty, 1, m, &cpu, &gpu);
      const double gamma = 2.0 * (k + 1) * std::ldexp(1.0, -23) + std::ldexp(1.0, -16);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < m; ++j) {
          double ref = b[j], mag = std::fabs(b[j]);
          for (int64_t l = 0; l < k; ++l) {
            const double p = static_cast<double>(x[i * k + l]) * scale[j] * q[j * k + l];
            ref += p;
            mag += std::fabs(p);
          }
          const float g = gpu[i * (m + 3) + 1 + j], c = cpu[i * (m + 3) + 1 + j];
          ASSERT_NEAR(g, ref, gamma * mag) << "vs double at (" << i << ", " << j << ")";
          ASSERT_NEAR(g, c, 2 * gamma * mag) << "vs CPU at (" << i << ", " << j << ")";
        }
      }
    }
  }
}

// MatMulInt8's prefill path over several 64 MiB chunks of converted weights (k = 16384: 2048
// rows per chunk, m = 4100: three chunks, the last one short).
TEST_F(CudaParityTest, MatMulInt8PrefillAcrossWeightChunks) {
  std::uniform_int_distribution<int> qd(-127, 127);
  const int64_t n = 9, k = 16384, m = 4100;
  const std::vector<float> x = RandomVec(&rng_, n * k);
  std::vector<int8_t> q(m * k);
  for (int8_t& v : q) v = static_cast<int8_t>(qd(rng_));
  const std::vector<float> scale = RandomVec(&rng_, m, 0.001f, 0.02f);
  const Twin tw{Put(cpu_.get(), q.data(), DType::kI8, {m, k}),
                Put(gpu_.get(), q.data(), DType::kI8, {m, k})};
  const Twin ts = TwinF32(scale, {m}), tx = TwinF32(x, {n, k});
  const Twin ty = TwinF32(std::vector<float>(n * m, NAN), {n, m});
  cpu_->MatMulInt8(tx.cpu, tw.cpu, ts.cpu, nullptr, ty.cpu);
  gpu_->MatMulInt8(tx.gpu, tw.gpu, ts.gpu, nullptr, ty.gpu);
  const std::vector<float> cpu = Read(cpu_.get(), ty.cpu), gpu = Read(gpu_.get(), ty.gpu);
  const double gamma = 2.0 * (k + 1) * std::ldexp(1.0, -23) + std::ldexp(1.0, -16);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; j += 7) {  // every 7th column: all three chunks, fast enough
      double mag = 0.0;
      for (int64_t l = 0; l < k; ++l) {
        mag += std::fabs(static_cast<double>(x[i * k + l]) * scale[j] * q[j * k + l]);
      }
      ASSERT_NEAR(gpu[i * m + j], cpu[i * m + j], 2 * gamma * mag)
          << "at (" << i << ", " << j << ")";
    }
  }
}

// MatMulGrouped: one launch over every expert's group, the group sizes read on the device;
// f32, bf16 and int8 experts, groups of 0, 1, 8 and 19 rows (several passes of 8 tokens), an
// expert not held (its rows keep the sentinel), k a multiple of the 16-byte load and not, and
// long enough for several loads per lane (1088), m not a multiple of the 8 rows of a block,
// x contiguous, as an aligned column view and as a misaligned one, into a column view. Against a
// double loop (exact f32 products, any summation order: 2k * 2^-23 of sum |x w|) and against the
// CPU's per-expert products.
TEST_F(CudaParityTest, MatMulGroupedEqualsPerExpertProducts) {
  std::uniform_int_distribution<int> qd(-127, 127);
  const std::vector<int32_t> sizes = {8, 0, 19, 1, 3, 5};
  const int64_t e_count = static_cast<int64_t>(sizes.size()), m = 37;
  const int64_t missing = 4;
  int64_t rows = 0;
  for (int32_t c : sizes) rows += c;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI8}) {
    for (const auto& [k, x_pad, x_col0] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {64, 0, 0}, {70, 0, 0}, {1088, 0, 0}, {1088, 8, 4}, {1088, 3, 1}}) {
      SCOPED_TRACE(testing::Message()
                   << DTypeName(dtype) << " k=" << k << " x_pad=" << x_pad << " x_col0=" << x_col0);
      const std::vector<float> x = RandomVec(&rng_, rows * k);
      std::vector<std::vector<float>> values(e_count);  // dequantised weights, [m, k] each
      std::vector<std::vector<float>> scales(e_count);
      std::vector<Tensor> wc, wg, sc, sg;
      for (int64_t e = 0; e < e_count; ++e) {
        std::vector<float>& v = values[e];
        if (e == missing) {
          wc.emplace_back();
          wg.emplace_back();
          if (dtype == DType::kI8) {
            sc.emplace_back();
            sg.emplace_back();
          }
          continue;
        }
        Twin tw;
        if (dtype == DType::kI8) {
          std::vector<int8_t> q(m * k);
          for (int8_t& b : q) b = static_cast<int8_t>(qd(rng_));
          scales[e] = RandomVec(&rng_, m, 0.001f, 0.02f);
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t j = 0; j < k; ++j) v.push_back(scales[e][r] * q[r * k + j]);
          }
          tw = Twin{Put(cpu_.get(), q.data(), DType::kI8, {m, k}),
                    Put(gpu_.get(), q.data(), DType::kI8, {m, k})};
          const Twin ts = TwinF32(scales[e], {m});
          sc.push_back(ts.cpu);
          sg.push_back(ts.gpu);
        } else if (dtype == DType::kBF16) {
          std::vector<uint16_t> bits;
          for (float f : RandomVec(&rng_, m * k)) {
            bits.push_back(TruncToBf16(f));
            v.push_back(RefBf16ToF32(bits.back()));
          }
          tw = TwinBf16(bits, {m, k});
        } else {
          v = RandomVec(&rng_, m * k);
          tw = TwinF32(v, {m, k});
        }
        wc.push_back(tw.cpu);
        wg.push_back(tw.gpu);
      }
      const Twin tx_full = TwinStrided(x, rows, k, k + x_pad, x_col0);
      const Twin tx = tx_full.Cols(x_col0, k);
      const Twin counts = TwinI32(sizes, {e_count});
      const Twin ty = TwinStrided(std::vector<float>(rows * m, kSentinel), rows, m, m + 3, 2);
      cpu_->MatMulGrouped(tx.cpu, wc, sc, counts.cpu, ty.cpu.Cols(2, m));
      gpu_->MatMulGrouped(tx.gpu, wg, sg, counts.gpu, ty.gpu.Cols(2, m));
      std::vector<float> cpu, gpu;
      ReadStrided(ty, 2, m, &cpu, &gpu);
      const double gamma = 2.0 * (k + 1) * std::ldexp(1.0, -23);
      int64_t row = 0;
      for (int64_t e = 0; e < e_count; ++e) {
        for (int32_t t = 0; t < sizes[e]; ++t, ++row) {
          for (int64_t j = 0; j < m; ++j) {
            const float g = gpu[row * (m + 3) + 2 + j], c = cpu[row * (m + 3) + 2 + j];
            if (e == missing) {
              ASSERT_EQ(g, kSentinel) << "row " << row;
              continue;
            }
            double ref = 0.0, mag = 0.0;
            for (int64_t l = 0; l < k; ++l) {
              const double p = static_cast<double>(x[row * k + l]) * values[e][j * k + l];
              ref += p;
              mag += std::fabs(p);
            }
            ASSERT_NEAR(g, ref, gamma * mag) << "expert " << e << " row " << row << " col " << j;
            ASSERT_NEAR(g, c, 2 * gamma * mag) << "vs CPU, expert " << e << " row " << row;
          }
        }
      }
    }
  }
}

// MoeGroup: the GPU's one-block counting sort equals the CPU's, exactly (it is a permutation),
// across chunk boundaries (1024 slots) and for 8 and 16 experts.
TEST_F(CudaParityTest, MoeGroupEqualsCpu) {
  for (int64_t n : {1, 5, 511, 512, 513, 3000}) {
    for (int64_t e : {8, 16}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " E=" << e);
      const int64_t k = 2;
      std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(e) - 1);
      std::vector<int32_t> ids(n * k);
      for (int64_t t = 0; t < n; ++t) {
        ids[t * k] = pick(rng_);
        do ids[t * k + 1] = pick(rng_);
        while (ids[t * k + 1] == ids[t * k]);
      }
      const Twin ti = TwinI32(ids, {n, k}), tw = TwinF32(RandomVec(&rng_, n * k), {n, k});
      const Twin token = TwinI32(std::vector<int32_t>(n * k, -1), {n * k});
      const Twin scale = TwinF32(std::vector<float>(n * k, 0.0f), {n * k});
      const Twin counts = TwinI32(std::vector<int32_t>(e, -1), {e});
      cpu_->MoeGroup(ti.cpu, tw.cpu, token.cpu, scale.cpu, counts.cpu);
      gpu_->MoeGroup(ti.gpu, tw.gpu, token.gpu, scale.gpu, counts.gpu);
      EXPECT_EQ(ReadI32(gpu_.get(), counts.gpu), ReadI32(cpu_.get(), counts.cpu));
      EXPECT_EQ(ReadI32(gpu_.get(), token.gpu), ReadI32(cpu_.get(), token.cpu));
      EXPECT_EQ(Read(gpu_.get(), scale.gpu), Read(cpu_.get(), scale.cpu));
    }
  }
}

// SampleRows, greedy rows: exact, on random rows with planted ties and NaN / -inf rows,
// across a vocabulary larger and smaller than one block of threads.
TEST_F(CudaParityTest, GreedySampleRowsEqualsCpu) {
  for (int64_t v : {7, 256, 65536}) {
    const int64_t n = 6;
    std::vector<float> x = RandomVec(&rng_, n * v);
    x[0 * v + v / 2] = x[0 * v + v - 1] = 5.0f;  // a tie at the maximum
    for (int64_t j = 0; j < v; ++j) x[1 * v + j] = j % 2 == 0 ? NAN : -INFINITY;  // all lose
    x[2 * v + v - 1] = INFINITY;
    const Twin tx = TwinF32(x, {n, v});
    const Twin out = TwinI32(std::vector<int32_t>(n, -7), {n});
    const std::vector<RowSampling> greedy(n);
    cpu_->SampleRows(tx.cpu, greedy, out.cpu);
    gpu_->SampleRows(tx.gpu, greedy, out.gpu);
    const std::vector<int32_t> want = ReadI32(cpu_.get(), out.cpu);
    EXPECT_EQ(ReadI32(gpu_.get(), out.gpu), want) << "V = " << v;
    EXPECT_EQ(want[0], v / 2);
    EXPECT_EQ(want[1], 0);
    EXPECT_EQ(want[2], v - 1);
  }
}

// SampleRows with temperature, top-k, top-p and min-p: the same token as the CPU's row sampler
// for every row. The block sums in another order than the CPU loop, so a draw within a few ulp
// of a cumulative boundary could differ; with random uniforms that has probability ~1e-13 per
// row, and rows of equal logits (exact sums) are checked at exact boundaries. The rows mix
// ties, -inf and NaN, over vocabularies smaller than the block, and of Jamba's size (65536)
// in a strided view (the head's logits buffer).
TEST_F(CudaParityTest, SampledRowsEqualCpu) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t v : {5, 1000, 65536}) {
    const int64_t n = 24;
    std::vector<float> x = RandomVec(&rng_, n * v, -6.0f, 6.0f);
    for (int64_t j = 0; j < v; j += 3) x[1 * v + j] = 0.5f;  // ties everywhere
    for (int64_t j = 0; j < v; j += 2) x[2 * v + j] = NAN;
    for (int64_t j = 0; j < v; ++j) x[3 * v + j] = 1.0f;  // all equal: exact sums
    std::vector<RowSampling> params(n);
    for (int64_t i = 0; i < n; ++i) {
      RowSampling& p = params[i];
      p.uniform = i == 3 ? 0.5 : unit(rng_);
      p.temperature = static_cast<float>(0.3 + 1.5 * unit(rng_));
      p.top_k = i % 3 == 0 ? 0 : static_cast<int32_t>(1 + unit(rng_) * 60);
      p.top_p = i % 4 == 0 ? 1.0f : static_cast<float>(0.1 + 0.9 * unit(rng_));
      p.min_p = i % 5 == 0 ? static_cast<float>(0.2 * unit(rng_)) : 0.0f;
    }
    params[3].top_k = 0;
    params[3].top_p = 0.5f;
    const Twin full = TwinStrided(x, n, v, v + 16, 0);
    const Twin tx = full.Cols(0, v);
    const Twin out = TwinI32(std::vector<int32_t>(n, -7), {n});
    cpu_->SampleRows(tx.cpu, params, out.cpu);
    gpu_->SampleRows(tx.gpu, params, out.gpu);
    EXPECT_EQ(ReadI32(gpu_.get(), out.gpu), ReadI32(cpu_.get(), out.cpu)) << "V = " << v;
  }
}

// ---- ScatterAddScaled --------------------------------------------------------------------

TEST_F(CudaParityTest, ScatterAddScaledWithRepeatedTargets) {
  const int64_t n = 6, d = 300, m = 10;
  const std::vector<float> init = RandomVec(&rng_, n * d);
  const std::vector<float> rows = RandomVec(&rng_, m * d);
  const std::vector<float> scale = RandomVec(&rng_, m, 0.0f, 1.0f);
  const std::vector<int32_t> idx = {5, 0, 5, 2, 2, 2, 0, 5, 1, 5};
  const Twin out = TwinF32(init, {n, d});
  const Twin tr = TwinF32(rows, {m, d}), ts = TwinF32(scale, {m}), ti = TwinI32(idx, {m});
  cpu_->ScatterAddScaled(tr.cpu, ti.cpu, ts.cpu, out.cpu);
  gpu_->ScatterAddScaled(tr.gpu, ti.gpu, ts.gpu, out.gpu);
  const std::vector<float> c = Read(cpu_.get(), out.cpu), g = Read(gpu_.get(), out.gpu);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < d; ++j) {
      double mag = std::fabs(init[r * d + j]);
      int count = 0;
      for (int64_t i = 0; i < m; ++i) {
        if (idx[i] != r) continue;
        mag += std::fabs(static_cast<double>(scale[i]) * rows[i * d + j]);
        ++count;
      }
      EXPECT_NEAR(g[r * d + j], c[r * d + j], (count + 1) * std::ldexp(1.0, -23) * mag)
          << "(" << r << ", " << j << ")";
    }
  }
}

// ---- Rope -----------------------------------------------------------------------------

TEST_F(CudaParityTest, RopeMixedPrefillAndDecode) {
  BatchLayout layout;
  layout.n_tokens = 9;
  layout.seqs = {{/*token_begin=*/0, /*n_tokens=*/5, /*n_past=*/0},
                 {5, 1, 4000},  // decode step far into a sequence
                 {6, 3, 100}};  // a later prefill chunk
  const int64_t rows = 10;      // row 9 is not in the layout: left untouched
  for (const auto& [head_dim, theta] :
       std::vector<std::pair<int64_t, double>>{{64, 10000.0}, {64, 1e6}, {32, 10000.0}}) {
    SCOPED_TRACE(testing::Message() << "head_dim=" << head_dim << " theta=" << theta);
    const int64_t width = 192;  // 3 or 6 heads
    const std::vector<float> x = RandomVec(&rng_, rows * width);
    const Twin t = TwinF32(x, {rows, width});
    cpu_->Rope(layout, t.cpu, head_dim, theta);
    gpu_->Rope(layout, t.gpu, head_dim, theta);
    const std::vector<float> c = Read(cpu_.get(), t.cpu), g = Read(gpu_.get(), t.gpu);
    for (int64_t i = 0; i < rows * width; ++i) {
      ASSERT_NEAR(g[i], c[i], 2e-6) << "at row " << i / width << " col " << i % width;
    }
    for (int64_t j = 0; j < width; ++j) EXPECT_EQ(g[9 * width + j], x[9 * width + j]);
    // Position 0 is the identity.
    for (int64_t j = 0; j < width; ++j) EXPECT_EQ(g[j], x[j]);
  }
}

// ---- MoeRoute ---------------------------------------------------------------------------

TEST_F(CudaParityTest, MoeRouteTopK) {
  const int64_t n = 33;
  for (const auto& [experts, k, renormalize] : std::vector<std::tuple<int64_t, int, bool>>{
           {8, 2, true}, {16, 4, false}, {8, 8, true}, {16, 1, false}}) {
    SCOPED_TRACE(testing::Message() << "E=" << experts << " k=" << k << " renorm=" << renormalize);
    const Twin logits = TwinF32(RandomVec(&rng_, n * experts, -4.0f, 4.0f), {n, experts});
    const Twin ids = TwinI32(std::vector<int32_t>(n * k, -7), {n, k});
    const Twin w = TwinF32(std::vector<float>(n * k, kSentinel), {n, k});
    cpu_->MoeRoute(logits.cpu, k, renormalize, ids.cpu, w.cpu);
    gpu_->MoeRoute(logits.gpu, k, renormalize, ids.gpu, w.gpu);
    EXPECT_EQ(ReadI32(gpu_.get(), ids.gpu), ReadI32(cpu_.get(), ids.cpu));
    ExpectRelClose(Read(cpu_.get(), w.cpu), Read(gpu_.get(), w.gpu), 3e-6, 0.0, "weights");
  }
}

TEST_F(CudaParityTest, MoeRouteTiesGoToTheLowerExpert) {
  // Row 0: all equal -> experts 0, 1, 2 with weight 1/4 each (no renormalisation).
  // Row 1: experts 1 and 3 tie for first place, 2 is last -> 1, 3, 0.
  const std::vector<float> logits = {0, 0, 0, 0, 0, 2, -1, 2};
  const Twin l = TwinF32(logits, {2, 4});
  const Twin ids = TwinI32(std::vector<int32_t>(6, -7), {2, 3});
  const Twin w = TwinF32(std::vector<float>(6, kSentinel), {2, 3});
  gpu_->MoeRoute(l.gpu, 3, /*renormalize=*/false, ids.gpu, w.gpu);
  EXPECT_EQ(ReadI32(gpu_.get(), ids.gpu), std::vector<int32_t>({0, 1, 2, 1, 3, 0}));
  const std::vector<float> got = Read(gpu_.get(), w.gpu);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(got[j], 0.25, 1e-7);
  const double z = 2 * std::exp(2.0) + 1 + std::exp(-1.0);
  EXPECT_NEAR(got[3], std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(got[4], std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(got[5], 1.0 / z, 1e-6);
}

}  // namespace
}  // namespace jamba
