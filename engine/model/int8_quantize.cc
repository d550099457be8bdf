#include "engine/model/int8_quantize.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

namespace jamba {

void QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale) {
  // std::nearbyint rounds in the current mode; FE_TONEAREST is ties-to-even, torch.round's rule.
  const int old_mode = std::fegetround();
  std::fesetround(FE_TONEAREST);
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(wr[j]));
    const float s = amax / 127.0f;
    scale[r] = s;
    int8_t* qr = q + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float v = s > 0.0f ? std::nearbyint(wr[j] / s) : 0.0f;
      qr[j] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
    }
  }
  std::fesetround(old_mode);
}

}  // namespace jamba
