// MatMulPrecision::kBf16 on both backends: products with bf16 and int8 weights (MatMul on both
// cuBLAS paths, MatMulInt8 on the GEMV and the cuBLAS path, MatMulGrouped) equal a double
// reference computed from x rounded to bf16 (round to nearest even, done here independently of
// the backends), within 2k * 2^-23 of sum |x w| (f32 summation in any order, as in
// cuda_parity_test.cc), and f32 weights keep x as it is. Each case also checks that the
// rounding shows: some outputs differ from the unrounded product by more than the tolerance,
// so a backend that ignored the precision would fail. Skipped when no CUDA device is present.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace jamba {
namespace {

using cuda_test::CudaTest;
using cuda_test::RandomVec;
using cuda_test::RefBf16ToF32;
using cuda_test::TruncToBf16;
using cuda_test::Twin;

float RoundToBf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

class CudaBf16PrecisionTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    absl::StatusOr<std::unique_ptr<Backend>> gpu = CreateCudaBackend(0, MatMulPrecision::kBf16);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = *std::move(gpu);
    cpu_ = CreateCpuBackend(BackendOptions{.matmul_precision = MatMulPrecision::kBf16});
  }

  // Checks y [n, m] of both backends against sum_l x'[i, l] w[j, l] (+ b[j]) with x' = x
  // rounded (or x itself when !rounded); w: the weights' values, [m, k] dequantised.
  void Check(const std::vector<float>& x, const std::vector<double>& w, const float* b, int64_t n,
             int64_t k, int64_t m, const std::vector<float>& cpu, const std::vector<float>& gpu,
             bool rounded) {
    const double gamma = 2.0 * (k + 1) * std::ldexp(1.0, -23);
    int64_t shows = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        double ref = b != nullptr ? b[j] : 0.0, plain = ref, mag = std::fabs(ref);
        for (int64_t l = 0; l < k; ++l) {
          const float xv = x[i * k + l];
          ref += static_cast<double>(rounded ? RoundToBf16(xv) : xv) * w[j * k + l];
          plain += static_cast<double>(xv) * w[j * k + l];
          mag += std::fabs(static_cast<double>(xv) * w[j * k + l]);
        }
        const double tol = gamma * mag;
        ASSERT_NEAR(gpu[i * m + j], ref, tol) << "CUDA at (" << i << ", " << j << ")";
        ASSERT_NEAR(cpu[i * m + j], ref, tol) << "CPU at (" << i << ", " << j << ")";
        shows += std::fabs(plain - ref) > 2 * tol;
      }
    }
    if (rounded) EXPECT_GT(shows, n * m / 2) << "the rounding of x hardly shows";
  }
};

TEST_F(CudaBf16PrecisionTest, MatMulRoundsXForBf16WeightsOnly) {
  // n = 64 and 65 straddle cuBLAS's stacked and per-term paths.
  for (int64_t n : {1, 5, 64, 65, 130}) {
    for (bool bf16 : {true, false}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " bf16=" << bf16);
      const int64_t k = 96, m = 40;
      const std::vector<float> x = RandomVec(&rng_, n * k), b = RandomVec(&rng_, m);
      std::vector<float> wf = RandomVec(&rng_, m * k);
      std::vector<uint16_t> bits(wf.size());
      std::vector<double> w(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) {
        bits[i] = TruncToBf16(wf[i]);
        w[i] = bf16 ? RefBf16ToF32(bits[i]) : wf[i];
      }
      const Twin tw = bf16 ? TwinBf16(bits, {m, k}) : TwinF32(wf, {m, k});
      const Twin tx = TwinF32(x, {n, k}), tb = TwinF32(b, {m});
      const Twin ty = TwinF32(std::vector<float>(n * m, NAN), {n, m});
      cpu_->MatMul(tx.cpu, tw.cpu, &tb.cpu, ty.cpu);
      gpu_->MatMul(tx.gpu, tw.gpu, &tb.gpu, ty.gpu);
      Check(x, w, b.data(), n, k, m, Read(cpu_.get(), ty.cpu), Read(gpu_.get(), ty.gpu), bf16);
    }
  }
}

TEST_F(CudaBf16PrecisionTest, MatMulInt8RoundsXOnBothPaths) {
  std::uniform_int_distribution<int> qd(-127, 127);
  for (int64_t n : {1, 8, 9, 70}) {  // the GEMV kernel up to 8 rows, cuBLAS above
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const int64_t k = 128, m = 45;
    const std::vector<float> x = RandomVec(&rng_, n * k);
    const std::vector<float> scale = RandomVec(&rng_, m, 0.001f, 0.02f);
    std::vector<int8_t> q(m * k);
    std::vector<double> w(m * k);
    for (int64_t i = 0; i < m * k; ++i) {
      q[i] = static_cast<int8_t>(qd(rng_));
      w[i] = static_cast<double>(scale[i / k]) * q[i];
    }
    const Twin tq{Put(cpu_.get(), q.data(), DType::kI8, {m, k}),
                  Put(gpu_.get(), q.data(), DType::kI8, {m, k})};
    const Twin ts = TwinF32(scale, {m}), tx = TwinF32(x, {n, k});
    const Twin ty = TwinF32(std::vector<float>(n * m, NAN), {n, m});
    cpu_->MatMulInt8(tx.cpu, tq.cpu, ts.cpu, nullptr, ty.cpu);
    gpu_->MatMulInt8(tx.gpu, tq.gpu, ts.gpu, nullptr, ty.gpu);
    Check(x, w, nullptr, n, k, m, Read(cpu_.get(), ty.cpu), Read(gpu_.get(), ty.gpu), true);
  }
}

TEST_F(CudaBf16PrecisionTest, MatMulGroupedRoundsXForBf16AndInt8Experts) {
  std::uniform_int_distribution<int> qd(-127, 127);
  const std::vector<int32_t> sizes = {3, 0, 9};
  const int64_t k = 64, m = 24, rows = 12;
  for (DType dtype : {DType::kBF16, DType::kI8}) {
    SCOPED_TRACE(DTypeName(dtype));
    const std::vector<float> x = RandomVec(&rng_, rows * k);
    std::vector<std::vector<double>> w(sizes.size());
    std::vector<Tensor> wc, wg, sc, sg;
    for (size_t e = 0; e < sizes.size(); ++e) {
      Twin tw;
      if (dtype == DType::kI8) {
        std::vector<int8_t> q(m * k);
        const std::vector<float> scale = RandomVec(&rng_, m, 0.001f, 0.02f);
        for (int64_t i = 0; i < m * k; ++i) {
          q[i] = static_cast<int8_t>(qd(rng_));
          w[e].push_back(static_cast<double>(scale[i / k]) * q[i]);
        }
        tw = Twin{Put(cpu_.get(), q.data(), DType::kI8, {m, k}),
                  Put(gpu_.get(), q.data(), DType::kI8, {m, k})};
        const Twin ts = TwinF32(scale, {m});
        sc.push_back(ts.cpu);
        sg.push_back(ts.gpu);
      } else {
        std::vector<uint16_t> bits;
        for (float f : RandomVec(&rng_, m * k)) {
          bits.push_back(TruncToBf16(f));
          w[e].push_back(RefBf16ToF32(bits.back()));
        }
        tw = TwinBf16(bits, {m, k});
      }
      wc.push_back(tw.cpu);
      wg.push_back(tw.gpu);
    }
    const Twin tx = TwinF32(x, {rows, k}), counts = TwinI32(sizes, {3});
    const Twin ty = TwinF32(std::vector<float>(rows * m, NAN), {rows, m});
    cpu_->MatMulGrouped(tx.cpu, wc, sc, counts.cpu, ty.cpu);
    gpu_->MatMulGrouped(tx.gpu, wg, sg, counts.gpu, ty.gpu);
    const std::vector<float> cpu = Read(cpu_.get(), ty.cpu), gpu = Read(gpu_.get(), ty.gpu);
    int64_t row = 0;
    for (size_t e = 0; e < sizes.size(); ++e) {
      const int64_t count = sizes[e];
      if (count == 0) continue;
      auto part = [&](const std::vector<float>& v, int64_t width) {
        return std::vector<float>(v.begin() + row * width, v.begin() + (row + count) * width);
      };
      Check(part(x, k), w[e], nullptr, count, k, m, part(cpu, m), part(gpu, m), true);
      row += count;
    }
  }
}

}  // namespace
}  // namespace jamba
