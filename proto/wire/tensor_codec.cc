#include "proto/wire/tensor_codec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace jamba {

void EncodeF32(const float* data, absl::Span<const int64_t> shape, v1::Tensor* out) {
  out->Clear();
  out->set_dtype(v1::DTYPE_F32);
  int64_t numel = 1;
  for (int64_t d : shape) {
    out->add_shape(d);
    numel *= d;
  }
  out->set_data(data, static_cast<size_t>(numel) * sizeof(float));
}

absl::StatusOr<WireF32View> ViewF32(const v1::Tensor& t, int rank, const std::string& field) {
  if (t.dtype() != v1::DTYPE_F32) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": dtype must be DTYPE_F32, got ", v1::DType_Name(t.dtype())));
  }
  if (t.shape_size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", rank,
                                                   " dimensions, got ", t.shape_size()));
  }
  WireF32View view;
  view.numel = 1;
  for (int64_t d : t.shape()) {
    // Each dimension < 2^31 and the product checked per step: no overflow below 2^62.
    if (d < 0 || d >= (int64_t{1} << 31)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": dimension ", d, " is outside [0, 2^31)"));
    }
    view.numel *= d;
    if (view.numel > (int64_t{1} << 40)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": too many elements"));
    }
    view.shape.push_back(d);
  }
  const uint64_t want = static_cast<uint64_t>(view.numel) * sizeof(float);
  if (t.data().size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": shape [",
                                                   absl::StrJoin(view.shape, ", "), "] needs ",
                                                   want, " bytes of f32, got ", t.data().size()));
  }
  view.data = t.data().data();
  return view;
}

}  // namespace jamba
