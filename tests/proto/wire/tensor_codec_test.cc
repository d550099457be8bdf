#include "proto/wire/tensor_codec.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

TEST(TensorCodecTest, RoundTripsThroughTheWire) {
  std::vector<float> values = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f, 1e-30f};
  v1::Tensor t;
  const int64_t shape[] = {2, 3};
  EncodeF32(values.data(), shape, &t);
  v1::Tensor back;
  ASSERT_TRUE(back.ParseFromString(t.SerializeAsString()));
  auto view = ViewF32(back, 2, "hidden");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(view->numel, 6);
  std::vector<float> decoded(6);
  std::memcpy(decoded.data(), view->data, 6 * sizeof(float));
  EXPECT_EQ(std::memcmp(decoded.data(), values.data(), sizeof(float) * 6), 0);  // bit exact
}

TEST(TensorCodecTest, EmptyTensorIsValid) {
  v1::Tensor t;
  const int64_t shape[] = {0, 4096};
  EncodeF32(nullptr, shape, &t);
  auto view = ViewF32(t, 2, "hidden");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->numel, 0);
}

TEST(TensorCodecTest, MalformedTensorsNameTheField) {
  auto make = [](v1::DType dtype, std::vector<int64_t> shape, size_t bytes) {
    v1::Tensor t;
    t.set_dtype(dtype);
    for (int64_t d : shape) t.add_shape(d);
    t.set_data(std::string(bytes, '\0'));
    return t;
  };
  const struct {
    v1::Tensor t;
    const char* message;
  } cases[] = {
      {make(v1::DTYPE_BF16, {2, 2}, 8), "hidden: dtype must be DTYPE_F32, got DTYPE_BF16"},
      {make(v1::DTYPE_F32, {4}, 16), "hidden: expected 2 dimensions, got 1"},
      {make(v1::DTYPE_F32, {2, -1}, 0), "hidden: dimension -1"},
      {make(v1::DTYPE_F32, {int64_t{1} << 31, 1}, 0), "outside [0, 2^31)"},
      {make(v1::DTYPE_F32, {(int64_t{1} << 31) - 1, (int64_t{1} << 31) - 1}, 0),
       "too many elements"},
      {make(v1::DTYPE_F32, {2, 3}, 23), "shape [2, 3] needs 24 bytes of f32, got 23"},
      {make(v1::DTYPE_F32, {2, 3}, 28), "got 28"},
  };
  for (const auto& c : cases) {
    absl::Status s = ViewF32(c.t, 2, "hidden").status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << c.message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace jamba
