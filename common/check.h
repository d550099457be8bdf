// Aborts for programmer errors only (broken invariants, violated preconditions of internal
// APIs). Anything caused by input data, files or the network must return an absl::Status.
#ifndef JAMBA_COMMON_CHECK_H_
#define JAMBA_COMMON_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define JAMBA_CHECK(cond)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

#define JAMBA_CHECK_MSG(cond, msg)                                                     \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   msg);                                                               \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

#endif  // JAMBA_COMMON_CHECK_H_
