// Writes NumPy .npy files (format version 1.0, little-endian, C order), e.g. jamba-run's
// --dump-logits. numpy.load() reads them back unchanged.
#ifndef JAMBA_COMMON_NPY_H_
#define JAMBA_COMMON_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace jamba {

// `data` holds product(shape) float32 values. Errors name the path.
absl::Status WriteNpyF32(const std::string& path, const float* data,
                         const std::vector<int64_t>& shape);

}  // namespace jamba

#endif  // JAMBA_COMMON_NPY_H_
