// FUZZ_CHECK: aborts (a crash to libFuzzer and to the replay test) when a parser breaks its
// contract. Not JAMBA_CHECK: these checks are about the code under test, and their message
// says which contract failed.
#ifndef JAMBA_TESTS_FUZZ_FUZZ_CHECK_H_
#define JAMBA_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "engine/tokenizer/utf8.h"

#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: fuzz contract violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

namespace jamba {

// The error contract of every parser of untrusted checkpoint files: InvalidArgument, starting
// with the file's name, short, and valid UTF-8 (messages travel in RPC statuses and JSON logs).
inline void CheckParseError(const absl::Status& status, const std::string& name) {
  constexpr size_t kMaxMessage = 2000;
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  const std::string message(status.message());
  FUZZ_CHECK(message.compare(0, name.size() + 2, name + ": ") == 0);
  FUZZ_CHECK(message.size() < kMaxMessage);
  FUZZ_CHECK(IsValidUtf8(message));
}

}  // namespace jamba

#endif  // JAMBA_TESTS_FUZZ_FUZZ_CHECK_H_
