#!/usr/bin/env bash
# Replays the committed fuzz corpus (tests/fuzz/corpus/) and runs the checkpoint and config
# tests under AddressSanitizer + UndefinedBehaviorSanitizer. CI runs this after tools/setup.sh;
# it needs only the default compiler (JAMBA_SANITIZE=ON, no clang or libFuzzer).
#
#   tools/fuzz_replay_asan.sh
#
# Configures build-asan/ (BUILD_DIR overrides), builds only the targets below (JOBS overrides
# the parallelism, default nproc) and runs them. Exits non-zero if any sanitizer report,
# crash or test failure occurs. Safe to rerun: the build folder is reused incrementally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-asan}"
JOBS="${JOBS:-$(nproc)}"

# name:path-in-build-dir
TESTS=(
  fuzz_replay_test:tests/fuzz/fuzz_replay_test
  safetensors_test:tests/engine/checkpoint/safetensors_test
  checkpoint_test:tests/engine/checkpoint/checkpoint_test
  model_config_test:tests/engine/config/model_config_test
)

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJAMBA_SANITIZE=ON -DJAMBA_ENABLE_CUDA=OFF \
  -DJAMBA_ENABLE_FUZZERS=OFF -DJAMBA_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${TESTS[@]%%:*}"

# Any report is fatal; leaks count as failures.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for entry in "${TESTS[@]}"; do
  name="${entry%%:*}"
  binary="$BUILD/${entry#*:}"
  echo "fuzz_replay_asan: running $name"
  if ! "$binary" --gtest_brief=1; then
    failed+=("$name")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz_replay_asan: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz_replay_asan: all passed under ASan/UBSan"
