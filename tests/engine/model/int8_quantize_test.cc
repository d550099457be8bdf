// QuantizeRowsInt8 against hand-computed rows: scale = max |w| / 127, round half to even,
// clamp to +-127, all-zero rows.
#include "engine/model/int8_quantize.h"

#include <vector>

#include "gtest/gtest.h"

namespace jamba {
namespace {

TEST(Int8QuantizeTest, HandComputedRows) {
  // Row 0: max 127 -> scale 1; -63.5 and 62.5 are ties (-> -64, 62); 0.49 -> 0.
  // Row 1: max 254 -> scale 2; -3 / 2 = -1.5 -> -2, 5 / 2 = 2.5 -> 2, -1 / 2 = -0.5 -> 0.
  // Row 2: all zero -> scale 0, zeros.
  const std::vector<float> w = {127.0f, -63.5f, 62.5f, 0.49f,  //
                                254.0f, -3.0f,  5.0f,  -1.0f,  //
                                0.0f,   0.0f,   0.0f,  0.0f};
  std::vector<int8_t> q(12, 99);
  std::vector<float> scale(3, -1.0f);
  QuantizeRowsInt8(w.data(), 3, 4, q.data(), scale.data());
  EXPECT_EQ(scale, (std::vector<float>{1.0f, 2.0f, 0.0f}));
  EXPECT_EQ(q, (std::vector<int8_t>{127, -64, 62, 0, 127, -2, 2, 0, 0, 0, 0, 0}));
}

TEST(Int8QuantizeTest, NegativeMaximumAndErrorBound) {
  const std::vector<float> w = {-0.3f, 0.1f, 0.2999f, -0.0001f, 0.15f};
  std::vector<int8_t> q(5);
  float scale = 0;
  QuantizeRowsInt8(w.data(), 1, 5, q.data(), &scale);
  EXPECT_FLOAT_EQ(scale, 0.3f / 127.0f);
  EXPECT_EQ(q[0], -127);  // the largest magnitude maps to the end of the range
  for (int j = 0; j < 5; ++j) {
    EXPECT_LE(std::abs(w[j] - scale * q[j]), scale / 2 * 1.0001f) << j;
  }
}

}  // namespace
}  // namespace jamba
