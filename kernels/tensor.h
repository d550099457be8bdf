// A non-owning, strided view of up to 4-D tensor data on some device.
//
// Ownership: a Tensor never owns memory. Memory is owned by a DeviceBuffer (see backend.h),
// by a MappedFile (weights used in place), or by the caller. Strides are in elements; the
// innermost stride is always 1 (rows may be padded or be column slices of a wider matrix).
// No abseil here: this header is shared with CUDA translation units.
#ifndef JAMBA_KERNELS_TENSOR_H_
#define JAMBA_KERNELS_TENSOR_H_

#include <array>
#include <cstdint>
#include <initializer_list>

#include "common/check.h"
#include "kernels/dtype.h"

namespace jamba {

enum class Device : uint8_t { kCpu, kCuda };

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> stride{};  // in elements

  // A contiguous row-major view of `data`.
  static Tensor Contiguous(void* data, DType dtype, std::initializer_list<int64_t> dims,
                           Device device = Device::kCpu) {
    Tensor t;
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.ndim = static_cast<int>(dims.size());
    JAMBA_CHECK(t.ndim <= kMaxDims);
    int i = 0;
    for (int64_t d : dims) t.shape[i++] = d;
    int64_t s = 1;
    for (int k = t.ndim - 1; k >= 0; --k) {
      t.stride[k] = s;
      s *= t.shape[k];
    }
    return t;
  }

  int64_t dim(int i) const { return shape[i < 0 ? i + ndim : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  bool contiguous() const {
    int64_t s = 1;
    for (int k = ndim - 1; k >= 0; --k) {
      if (shape[k] != 1 && stride[k] != s) return false;
      s *= shape[k];
    }
    return true;
  }
  // Elements between consecutive rows of a 2-D view.
  int64_t ld() const { return ndim >= 2 ? stride[ndim - 2] : shape[0]; }

  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
  uint8_t* byte_ptr() const { return static_cast<uint8_t*>(data); }

  // Rows [begin, begin + count) of the first dimension.
  Tensor Rows(int64_t begin, int64_t count) const {
    JAMBA_CHECK(ndim >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[0]);
    Tensor t = *this;
    t.data = byte_ptr() + begin * stride[0] * static_cast<int64_t>(DTypeSize(dtype));
    t.shape[0] = count;
    return t;
  }
  // Columns [begin, begin + count) of the last dimension (a strided view).
  Tensor Cols(int64_t begin, int64_t count) const {
    JAMBA_CHECK(ndim >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[ndim - 1]);
    Tensor t = *this;
    t.data = byte_ptr() + begin * static_cast<int64_t>(DTypeSize(dtype));
    t.shape[ndim - 1] = count;
    return t;
  }
  // Element i of the first dimension, with that dimension dropped.
  Tensor Index(int64_t i) const {
    Tensor t = Rows(i, 1);
    for (int k = 0; k + 1 < ndim; ++k) {
      t.shape[k] = t.shape[k + 1];
      t.stride[k] = t.stride[k + 1];
    }
    t.ndim = ndim - 1;
    return t;
  }
  // Same data, new shape; requires a contiguous view.
  Tensor Reshape(std::initializer_list<int64_t> dims) const {
    JAMBA_CHECK(contiguous());
    Tensor t = Contiguous(data, dtype, dims, device);
    JAMBA_CHECK(t.numel() == numel());
    return t;
  }
};

}  // namespace jamba

#endif  // JAMBA_KERNELS_TENSOR_H_
