// libFuzzer entry for the config.json / index.json parsers; the logic is in
// config_fuzz_target.cc.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jamba::FuzzConfig(data, size);
  return 0;
}
