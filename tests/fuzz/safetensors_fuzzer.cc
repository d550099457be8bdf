// libFuzzer entry for the safetensors parser; the logic is in safetensors_fuzz_target.cc.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jamba::FuzzSafetensors(data, size);
  return 0;
}
