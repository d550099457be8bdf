#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/checkpoint/safetensors.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_targets.h"

namespace jamba {
namespace {

// Parses one buffer and checks what the parser promises about the result.
void ParseAndCheck(const uint8_t* data, size_t size, const std::string& name) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Parse(data, size, name);
  if (!file.ok()) {
    CheckParseError(file.status(), name);
    return;
  }
  FUZZ_CHECK(size >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | data[i];
  const uint8_t* section = data + 8 + header_len;
  const uint8_t* end = data + size;

  std::vector<std::pair<const uint8_t*, size_t>> ranges;
  uint8_t checksum = 0;
  for (const auto& [key, t] : (*file)->tensors()) {
    FUZZ_CHECK(t.name == key);
    FUZZ_CHECK((*file)->Find(key) == &t);
    int64_t numel = t.numel();
    FUZZ_CHECK(numel >= 0);
    FUZZ_CHECK(static_cast<uint64_t>(numel) * DTypeSize(t.dtype) == t.nbytes);
    FUZZ_CHECK(t.data >= section && t.data <= end && t.nbytes <= static_cast<size_t>(end - t.data));
    // Touch every byte: an out-of-bounds view is an ASan report here.
    for (size_t i = 0; i < t.nbytes; ++i) checksum ^= t.data[i];
    ranges.emplace_back(t.data, t.nbytes);
  }
  // The tensors tile the data section exactly.
  std::sort(ranges.begin(), ranges.end());
  const uint8_t* next = section;
  for (const auto& [begin, nbytes] : ranges) {
    FUZZ_CHECK(begin == next);
    next = begin + nbytes;
  }
  FUZZ_CHECK(next == end);
  volatile uint8_t sink = checksum;
  (void)sink;
}

}  // namespace

void FuzzSafetensors(const uint8_t* data, size_t size) {
  ParseAndCheck(data, size, "fuzz.safetensors");

  // Random mutations rarely keep the 8-byte length in step with the JSON after it, so also try
  // the input with the length rewritten to end the header at the last '}' (the data section
  // then starts right after it): edits of the JSON then still reach the entry validation.
  if (size < 9) return;
  const uint8_t* last = nullptr;
  for (const uint8_t* p = data + size - 1; p >= data + 8; --p) {
    if (*p == '}') {
      last = p;
      break;
    }
  }
  if (last == nullptr) return;
  const uint64_t header_len = static_cast<uint64_t>(last - (data + 8)) + 1;
  uint64_t stored = 0;
  for (int i = 7; i >= 0; --i) stored = stored << 8 | data[i];
  if (stored == header_len) return;
  std::vector<uint8_t> fixed(data, data + size);
  for (int i = 0; i < 8; ++i) fixed[i] = static_cast<uint8_t>(header_len >> (8 * i));
  ParseAndCheck(fixed.data(), fixed.size(), "fixed.safetensors");
}

}  // namespace jamba
