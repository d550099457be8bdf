// Helpers shared by the kernel tests: device tensors filled from host vectors through the
// Backend memory API (so the tests only use the Backend interface), strided views with a
// sentinel-filled margin, deterministic random data, and reference-side bf16 handling that does
// not depend on kernels/dtype.h.
#ifndef JAMBA_TESTS_KERNELS_KERNEL_TEST_UTIL_H_
#define JAMBA_TESTS_KERNELS_KERNEL_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"

namespace jamba::kernel_test {

// A value no kernel computes from the test data: marks memory that must stay untouched.
constexpr float kSentinel = -12345.5f;

// bf16 -> f32 widening written independently of kernels/dtype.h: bf16 is the top half of f32.
inline float RefBf16ToF32(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Truncates f32 to bf16 (any bf16 value is valid test data, so no rounding is needed).
inline uint16_t TruncToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}

inline std::vector<float> RandomVec(std::mt19937* rng, size_t n, float lo = -1.0f,
                                    float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

inline double RefSilu(double v) { return v / (1.0 + std::exp(-v)); }
inline double RefSoftplus(double v) { return std::log1p(std::exp(v)); }

// Owns device buffers for the duration of a test and moves data in and out of them.
class DeviceArena {
 public:
  explicit DeviceArena(Backend* backend) : backend_(backend) {}

  Backend* backend() const { return backend_; }

  // A zero-initialised (by upload) contiguous tensor.
  Tensor Zeros(DType dtype, std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(dtype, shape);
    std::vector<uint8_t> zeros(t.nbytes(), 0);
    Put(zeros.data(), t);
    return t;
  }
  // A contiguous f32 tensor filled with `value` (e.g. kSentinel, NaN).
  Tensor Filled(std::initializer_list<int64_t> shape, float value) {
    Tensor t = Alloc(DType::kF32, shape);
    std::vector<float> host(t.numel(), value);
    Put(host.data(), t);
    return t;
  }
  Tensor F32(const std::vector<float>& host, std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(DType::kF32, shape);
    EXPECT_EQ(static_cast<int64_t>(host.size()), t.numel());
    Put(host.data(), t);
    return t;
  }
  Tensor Bf16(const std::vector<uint16_t>& host, std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(DType::kBF16, shape);
    EXPECT_EQ(static_cast<int64_t>(host.size()), t.numel());
    Put(host.data(), t);
    return t;
  }
  Tensor I8(const std::vector<int8_t>& host, std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(DType::kI8, shape);
    EXPECT_EQ(static_cast<int64_t>(host.size()), t.numel());
    Put(host.data(), t);
    return t;
  }
  Tensor I32(const std::vector<int32_t>& host, std::initializer_list<int64_t> shape) {
    Tensor t = Alloc(DType::kI32, shape);
    EXPECT_EQ(static_cast<int64_t>(host.size()), t.numel());
    Put(host.data(), t);
    return t;
  }

  // Whole contents of a contiguous tensor.
  std::vector<float> ReadF32(const Tensor& t) {
    std::vector<float> host(t.numel());
    EXPECT_TRUE(backend_->Download(t, host.data()).ok());
    return host;
  }
  std::vector<int32_t> ReadI32(const Tensor& t) {
    std::vector<int32_t> host(t.numel());
    EXPECT_TRUE(backend_->Download(t, host.data()).ok());
    return host;
  }

 private:
  Tensor Alloc(DType dtype, std::initializer_list<int64_t> shape) {
    auto buf = backend_->Allocate(dtype, shape);
    EXPECT_TRUE(buf.ok()) << buf.status();
    Tensor t = (*buf)->tensor();
    buffers_.push_back(std::move(*buf));
    return t;
  }
  void Put(const void* host, const Tensor& t) {
    EXPECT_TRUE(backend_->Upload(host, t.nbytes(), t).ok());
  }

  Backend* backend_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
};

// A 2-D f32 matrix [rows, cols] stored as columns [col0, col0 + cols) of a wider contiguous
// buffer [rows, ld]; the margin holds kSentinel so stray writes can be detected.
struct StridedF32 {
  Tensor full;  // [rows, ld], contiguous
  Tensor view;  // [rows, cols] column view of `full`
  int64_t rows = 0, cols = 0, ld = 0, col0 = 0;
};

inline StridedF32 MakeStrided(DeviceArena* arena, const std::vector<float>& values, int64_t rows,
                              int64_t cols, int64_t ld, int64_t col0) {
  StridedF32 s;
  s.rows = rows;
  s.cols = cols;
  s.ld = ld;
  s.col0 = col0;
  std::vector<float> host(rows * ld, kSentinel);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) host[i * ld + col0 + j] = values[i * cols + j];
  s.full = arena->F32(host, {rows, ld});
  s.view = s.full.Cols(col0, cols);
  return s;
}

// Reads back the view's values (row-major [rows, cols]) and checks the margin is untouched.
inline std::vector<float> ReadStrided(DeviceArena* arena, const StridedF32& s) {
  std::vector<float> host = arena->ReadF32(s.full);
  std::vector<float> out(s.rows * s.cols);
  for (int64_t i = 0; i < s.rows; ++i) {
    for (int64_t j = 0; j < s.ld; ++j) {
      const float v = host[i * s.ld + j];
      if (j >= s.col0 && j < s.col0 + s.cols) {
        out[i * s.cols + j - s.col0] = v;
      } else {
        EXPECT_EQ(v, kSentinel) << "write outside the view at row " << i << " col " << j;
      }
    }
  }
  return out;
}

}  // namespace jamba::kernel_test

#endif  // JAMBA_TESTS_KERNELS_KERNEL_TEST_UTIL_H_
