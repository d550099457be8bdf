#include "engine/model/weight_loader.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/model/int8_quantize.h"

namespace jamba {
namespace {

float ReadAsF32(const uint8_t* p, DType t) {
  uint16_t h;
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::kBF16:
      std::memcpy(&h, p, 2);
      return Bf16ToF32(h);
    case DType::kF16:
      std::memcpy(&h, p, 2);
      return F16ToF32(h);
    default:
      JAMBA_CHECK_MSG(false, "ReadAsF32: non-float dtype");
  }
  return 0.0f;
}

Tensor MakeView(const uint8_t* data, DType dtype, const std::vector<int64_t>& dims) {
  Tensor t;
  t.data = const_cast<uint8_t*>(data);  // weights are never written through these views
  t.dtype = dtype;
  t.device = Device::kCpu;
  t.ndim = static_cast<int>(dims.size());
  int64_t s = 1;
  for (int k = t.ndim - 1; k >= 0; --k) {
    t.shape[k] = dims[k];
    t.stride[k] = s;
    s *= dims[k];
  }
  return t;
}

}  // namespace

Tensor WeightLoader::AccountingView(DType dtype, const std::vector<int64_t>& dims) const {
  Tensor t = MakeView(nullptr, dtype, dims);
  t.device = backend_->device();
  return t;
}

absl::StatusOr<Tensor> WeightLoader::Convert(const SafetensorsTensor& t, size_t elem_offset,
                                             int64_t numel, DType want,
                                             std::vector<int64_t> dims) {
  const size_t in_size = DTypeSize(t.dtype);
  const uint8_t* src = t.data + elem_offset * in_size;
  bytes_ += numel * static_cast<int64_t>(DTypeSize(want));
  parameters_ += numel;
  if (!checkpoint_->has_data()) return AccountingView(want, dims);
  // In place from the mapping when no conversion is needed and the backend is host memory.
  if (t.dtype == want && backend_->device() == Device::kCpu) {
    return MakeView(src, want, dims);
  }
  std::vector<uint8_t> host(static_cast<size_t>(numel) * DTypeSize(want));
  if (t.dtype == want) {
    std::memcpy(host.data(), src, host.size());
  } else if (want == DType::kF32) {
    float* out = reinterpret_cast<float*>(host.data());
    for (int64_t i = 0; i < numel; ++i) out[i] = ReadAsF32(src + i * in_size, t.dtype);
  } else if (want == DType::kBF16) {
    uint16_t* out = reinterpret_cast<uint16_t*>(host.data());
    for (int64_t i = 0; i < numel; ++i) out[i] = F32ToBf16(ReadAsF32(src + i * in_size, t.dtype));
  } else {
    return absl::InternalError("WeightLoader: unsupported target dtype");
  }
  std::unique_ptr<DeviceBuffer> buf;
  switch (dims.size()) {
    case 1: {
      JAMBA_ASSIGN_OR_RETURN(buf, backend_->Allocate(want, {dims[0]}));
      break;
    }
    case 2: {
      JAMBA_ASSIGN_OR_RETURN(buf, backend_->Allocate(want, {dims[0], dims[1]}));
      break;
    }
    default:
      return absl::InternalError("WeightLoader: only 1-D and 2-D weights are materialised");
  }
  JAMBA_RETURN_IF_ERROR(backend_->Upload(host.data(), host.size(), buf->tensor()));
  Tensor view = buf->tensor();
  buffers_.push_back(std::move(buf));
  return view;
}

absl::StatusOr<Tensor> WeightLoader::Quantize(const SafetensorsTensor& t, size_t elem_offset,
                                              int64_t rows, int64_t cols, Tensor* scale) {
  const int64_t numel = rows * cols;
  bytes_ += numel + rows * static_cast<int64_t>(sizeof(float));
  parameters_ += numel;
  if (!checkpoint_->has_data()) {
    *scale = AccountingView(DType::kF32, {rows});
    return AccountingView(DType::kI8, {rows, cols});
  }
  const size_t in_size = DTypeSize(t.dtype);
  const uint8_t* src = t.data + elem_offset * in_size;
  std::vector<float> values(static_cast<size_t>(numel));
  for (int64_t i = 0; i < numel; ++i) values[i] = ReadAsF32(src + i * in_size, t.dtype);
  std::vector<int8_t> q(static_cast<size_t>(numel));
  std::vector<float> scales(static_cast<size_t>(rows));
  QuantizeRowsInt8(values.data(), rows, cols, q.data(), scales.data());
  JAMBA_ASSIGN_OR_RETURN(auto qbuf, backend_->Allocate(DType::kI8, {rows, cols}));
  JAMBA_RETURN_IF_ERROR(backend_->Upload(q.data(), q.size(), qbuf->tensor()));
  JAMBA_ASSIGN_OR_RETURN(auto sbuf, backend_->Allocate(DType::kF32, {rows}));
  JAMBA_RETURN_IF_ERROR(
      backend_->Upload(scales.data(), scales.size() * sizeof(float), sbuf->tensor()));
  *scale = sbuf->tensor();
  Tensor view = qbuf->tensor();
  buffers_.push_back(std::move(qbuf));
  buffers_.push_back(std::move(sbuf));
  return view;
}

absl::StatusOr<Tensor> WeightLoader::ExpertMatrix(const std::string& name,
                                                  std::vector<int64_t> shape, Tensor* scale) {
  *scale = Tensor{};
  if (expert_dtype_ != DType::kI8) return Matrix(name, std::move(shape));
  JAMBA_CHECK(shape.size() == 2);
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint_->GetChecked(name, shape));
  return Quantize(*t, 0, shape[0], shape[1], scale);
}

absl::StatusOr<Tensor> WeightLoader::StackedExpertMatrix(const std::string& name, int64_t count,
                                                         int64_t index, int64_t rows,
                                                         int64_t cols, Tensor* scale) {
  *scale = Tensor{};
  if (expert_dtype_ != DType::kI8) return StackedMatrix(name, count, index, rows, cols);
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t,
                         checkpoint_->GetChecked(name, {count, rows, cols}));
  JAMBA_CHECK(index >= 0 && index < count);
  return Quantize(*t, static_cast<size_t>(index * rows * cols), rows, cols, scale);
}

absl::StatusOr<Tensor> WeightLoader::Matrix(const std::string& name, std::vector<int64_t> shape) {
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint_->GetChecked(name, shape));
  return Convert(*t, 0, t->numel(), matrix_dtype_, shape);
}

absl::StatusOr<Tensor> WeightLoader::StackedMatrix(const std::string& name, int64_t count,
                                                   int64_t index, int64_t rows, int64_t cols) {
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t,
                         checkpoint_->GetChecked(name, {count, rows, cols}));
  JAMBA_CHECK(index >= 0 && index < count);
  return Convert(*t, static_cast<size_t>(index * rows * cols), rows * cols, matrix_dtype_,
                 {rows, cols});
}

absl::StatusOr<Tensor> WeightLoader::F32(const std::string& name, std::vector<int64_t> shape,
                                         std::vector<int64_t> view_shape) {
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint_->GetChecked(name, shape));
  if (view_shape.empty()) view_shape = shape;
  return Convert(*t, 0, t->numel(), DType::kF32, view_shape);
}

absl::StatusOr<Tensor> WeightLoader::NegExpF32(const std::string& name,
                                               std::vector<int64_t> shape) {
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint_->GetChecked(name, shape));
  const int64_t n = t->numel();
  JAMBA_CHECK(shape.size() == 2);
  if (!checkpoint_->has_data()) {
    bytes_ += n * 4;
    parameters_ += n;
    return AccountingView(DType::kF32, shape);
  }
  std::vector<float> host(n);
  for (int64_t i = 0; i < n; ++i) {
    host[i] = -std::exp(ReadAsF32(t->data + i * DTypeSize(t->dtype), t->dtype));
  }
  JAMBA_ASSIGN_OR_RETURN(auto buf, backend_->Allocate(DType::kF32, {shape[0], shape[1]}));
  JAMBA_RETURN_IF_ERROR(backend_->Upload(host.data(), n * sizeof(float), buf->tensor()));
  bytes_ += n * 4;
  parameters_ += n;
  Tensor view = buf->tensor();
  buffers_.push_back(std::move(buf));
  return view;
}

}  // namespace jamba
