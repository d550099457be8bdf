// Helpers for reading the tokenizer parity fixtures (tests/fixtures/tokenizers, produced by
// tools/make_tokenizer_fixtures.py).
#ifndef JAMBA_TESTS_ENGINE_TOKENIZER_FIXTURE_UTIL_H_
#define JAMBA_TESTS_ENGINE_TOKENIZER_FIXTURE_UTIL_H_

#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"

namespace jamba {
namespace testing_util {

inline std::string TokenizerFixtureDir(const std::string& name) {
  return std::string(JAMBA_TEST_DATA_DIR) + "/tokenizers/" + name;
}

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Returns a discarded JSON value if the file is missing or malformed.
inline nlohmann::json ReadJsonFile(const std::string& path) {
  return nlohmann::json::parse(ReadTextFile(path), nullptr, /*allow_exceptions=*/false);
}

}  // namespace testing_util
}  // namespace jamba

#endif  // JAMBA_TESTS_ENGINE_TOKENIZER_FIXTURE_UTIL_H_
