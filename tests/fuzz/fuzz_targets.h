// Entry points shared by the libFuzzer binaries (*_fuzzer.cc, built with
// JAMBA_ENABLE_FUZZERS=ON) and the corpus replay test (fuzz_replay_test.cc, built otherwise), so
// both run exactly the same code. Each feeds one input to a parser of untrusted checkpoint files
// and aborts if the parser breaks its contract: a successful parse must describe only bytes of
// the input, and a failure must be one InvalidArgument that names the file and stays short.
#ifndef JAMBA_TESTS_FUZZ_FUZZ_TARGETS_H_
#define JAMBA_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>

namespace jamba {

// The bytes of a whole .safetensors file.
void FuzzSafetensors(const uint8_t* data, size_t size);
// The text of a config.json, also parsed as a model.safetensors.index.json.
void FuzzConfig(const uint8_t* data, size_t size);

}  // namespace jamba

#endif  // JAMBA_TESTS_FUZZ_FUZZ_TARGETS_H_
