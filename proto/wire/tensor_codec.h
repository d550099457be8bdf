// Dense arrays in and out of jamba.v1.Tensor. Decoding validates everything a peer could get
// wrong (dtype, rank, negative or overflowing dimensions, byte count) and names the field, so
// a bad request becomes INVALID_ARGUMENT instead of an out-of-bounds read.
#ifndef JAMBA_PROTO_WIRE_TENSOR_CODEC_H_
#define JAMBA_PROTO_WIRE_TENSOR_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "jamba/v1/tensor.pb.h"

namespace jamba {

// A validated f32 tensor inside a message: `data` points into the message's bytes (not
// necessarily 4-byte aligned: copy with memcpy or Backend::Upload) and lives as long as it.
struct WireF32View {
  std::vector<int64_t> shape;
  const void* data = nullptr;
  int64_t numel = 0;
};

// Writes `data` (product(shape) f32 values, host memory) into `out`.
void EncodeF32(const float* data, absl::Span<const int64_t> shape, v1::Tensor* out);

// Checks that `t` is f32 with `rank` dimensions, each in [0, 2^31), holding exactly
// product(shape) * 4 bytes; `field` names it in errors ("hidden: ...").
absl::StatusOr<WireF32View> ViewF32(const v1::Tensor& t, int rank, const std::string& field);

}  // namespace jamba

#endif  // JAMBA_PROTO_WIRE_TENSOR_CODEC_H_
