// Fixture for the CUDA backend tests: a CPU reference backend and a CUDA backend side by side,
// "twin" tensors holding the same host data on both, strided views with a sentinel margin.
// Every test skips (GTEST_SKIP) when CreateCudaBackend reports Unavailable: no driver or no
// GPU on this machine.
#ifndef JAMBA_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define JAMBA_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba::cuda_test {

// Test data helpers shared with the CPU kernel tests.
using kernel_test::kSentinel;
using kernel_test::RandomVec;
using kernel_test::RefBf16ToF32;
using kernel_test::TruncToBf16;

// The same data on the CPU backend and on the CUDA backend.
struct Twin {
  Tensor cpu;
  Tensor gpu;
  // Column view [.., begin, begin + count) of both.
  Twin Cols(int64_t begin, int64_t count) const {
    return Twin{cpu.Cols(begin, count), gpu.Cols(begin, count)};
  }
};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Backend>> gpu = CreateCudaBackend(0);
    if (absl::IsUnavailable(gpu.status())) {
      GTEST_SKIP() << "no CUDA device: " << gpu.status();
    }
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(*gpu);
  }
  void TearDown() override {
    if (gpu_ != nullptr) {
      EXPECT_TRUE(gpu_->Synchronize().ok());
    }
    buffers_.clear();
  }

  // A zero-filled contiguous tensor on `backend`, owned by the fixture.
  Tensor Alloc(Backend* backend, DType dtype, std::initializer_list<int64_t> shape) {
    absl::StatusOr<std::unique_ptr<DeviceBuffer>> buf = backend->Allocate(dtype, shape);
    EXPECT_TRUE(buf.ok()) << buf.status();
    if (!buf.ok()) return Tensor{};
    Tensor t = (*buf)->tensor();
    buffers_.push_back(std::move(*buf));
    return t;
  }
  Tensor Put(Backend* backend, const void* host, DType dtype,
             std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(backend, dtype, shape);
    EXPECT_TRUE(backend->Upload(host, t.nbytes(), t).ok());
    return t;
  }

  Twin TwinF32(const std::vector<float>& host, std::initializer_list<int64_t> shape) {
    return Twin{Put(cpu_.get(), host.data(), DType::kF32, shape),
                Put(gpu_.get(), host.data(), DType::kF32, shape)};
  }
  Twin TwinBf16(const std::vector<uint16_t>& host, std::initializer_list<int64_t> shape) {
    return Twin{Put(cpu_.get(), host.data(), DType::kBF16, shape),
                Put(gpu_.get(), host.data(), DType::kBF16, shape)};
  }
  Twin TwinI32(const std::vector<int32_t>& host, std::initializer_list<int64_t> shape) {
    return Twin{Put(cpu_.get(), host.data(), DType::kI32, shape),
                Put(gpu_.get(), host.data(), DType::kI32, shape)};
  }
  // [rows, cols] values stored at columns [col0, col0 + cols) of a [rows, ld] buffer whose
  // other columns hold kSentinel. Returns the full buffers; take .Cols(col0, cols) for the view.
  Twin TwinStrided(const std::vector<float>& values, int64_t rows, int64_t cols, int64_t ld,
                   int64_t col0) {
    std::vector<float> host(rows * ld, kSentinel);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) host[i * ld + col0 + j] = values[i * cols + j];
    return TwinF32(host, {rows, ld});
  }

  std::vector<float> Read(Backend* backend, const Tensor& t) {
    std::vector<float> host(t.numel());
    absl::Status s = backend->Download(t, host.data());
    EXPECT_TRUE(s.ok()) << s;
    return host;
  }
  std::vector<int32_t> ReadI32(Backend* backend, const Tensor& t) {
    std::vector<int32_t> host(t.numel());
    absl::Status s = backend->Download(t, host.data());
    EXPECT_TRUE(s.ok()) << s;
    return host;
  }
  // Contents of a full strided buffer from both backends; expects the margin (columns outside
  // [col0, col0 + cols)) to still hold kSentinel on the CUDA side.
  void ReadStrided(const Twin& full, int64_t col0, int64_t cols, std::vector<float>* cpu,
                   std::vector<float>* gpu) {
    *cpu = Read(cpu_.get(), full.cpu);
    *gpu = Read(gpu_.get(), full.gpu);
    const int64_t rows = full.gpu.dim(0), ld = full.gpu.dim(1);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < ld; ++j)
        if (j < col0 || j >= col0 + cols) {
          EXPECT_EQ((*gpu)[i * ld + j], kSentinel)
              << "CUDA wrote outside the view at (" << i << ", " << j << ")";
        }
  }

  std::unique_ptr<Backend> cpu_ = CreateCpuBackend();
  std::unique_ptr<Backend> gpu_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  std::mt19937 rng_{1234};
};

}  // namespace jamba::cuda_test

#endif  // JAMBA_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
