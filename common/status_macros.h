// Error propagation helpers. Errors are values (absl::Status / absl::StatusOr) everywhere in
// the project; these two macros are the only sugar on top.
#ifndef JAMBA_COMMON_STATUS_MACROS_H_
#define JAMBA_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define JAMBA_CONCAT_INNER_(a, b) a##b
#define JAMBA_CONCAT_(a, b) JAMBA_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define JAMBA_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::absl::Status jamba_status_ = (expr);          \
    if (!jamba_status_.ok()) return jamba_status_;  \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its error status.
#define JAMBA_ASSIGN_OR_RETURN(lhs, rexpr) \
  JAMBA_ASSIGN_OR_RETURN_IMPL_(JAMBA_CONCAT_(jamba_statusor_, __LINE__), lhs, rexpr)

#define JAMBA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // JAMBA_COMMON_STATUS_MACROS_H_
