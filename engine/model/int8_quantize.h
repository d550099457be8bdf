// Per-row symmetric int8 quantisation of weight matrices, as Jamba-1.5's ExpertsInt8 (and
// vLLM's experts_int8) do it at load time: for each row r, scale[r] = max_j |w[r, j]| / 127 and
// q[r, j] = round_half_even(w[r, j] / scale[r]) clamped to [-127, 127]; an all-zero row gets
// scale 0 and zeros. w ~= scale[r] * q[r, j] with error <= scale[r] / 2 per element.
// The scales are f32 (vLLM keeps them in the model's dtype).
#ifndef JAMBA_ENGINE_MODEL_INT8_QUANTIZE_H_
#define JAMBA_ENGINE_MODEL_INT8_QUANTIZE_H_

#include <cstdint>

namespace jamba {

// w [rows, cols] f32 row-major -> q [rows, cols] int8, scale [rows] f32.
void QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale);

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_INT8_QUANTIZE_H_
