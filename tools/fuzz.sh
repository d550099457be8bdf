#!/usr/bin/env bash
# Fuzzes the parsers of untrusted checkpoint files with libFuzzer + ASan + UBSan and grows the
# committed regression corpus (tests/fuzz/corpus/<target>/).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s; safetensors config)
#
# Builds the fuzzers in build-fuzz/ with clang (JAMBA_ENABLE_FUZZERS=ON), runs each for the given
# time starting from its corpus, then merges the corpus and the new inputs with -merge=1 (keeps
# only inputs that add coverage) back into tests/fuzz/corpus/<target>/. Inputs that crashed
# (files named crash-*, timeout-*, oom-*, leak-*) are always kept: they are the regression
# cases fuzz_replay_test replays. A crash makes the script exit 1 after copying the input into
# the corpus; fix the parser, then rerun. Environment: CC/CXX (default clang-14/clang++-14),
# JOBS (build parallelism, default nproc), BUILD_DIR (default build-fuzz).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(safetensors config)
JOBS="${JOBS:-$(nproc)}"
MAX_LEN=8192

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="${CC:-clang-14}" -DCMAKE_CXX_COMPILER="${CXX:-clang++-14}" \
  -DJAMBA_ENABLE_FUZZERS=ON -DJAMBA_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target "${TARGETS[@]/%/_fuzzer}" -j "$JOBS"

is_regression() { [[ "$(basename "$1")" =~ ^(crash|timeout|oom|leak|slow-unit)- ]]; }

failed=()
for target in "${TARGETS[@]}"; do
  fuzzer="$BUILD/tests/fuzz/${target}_fuzzer"
  corpus="$ROOT/tests/fuzz/corpus/$target"
  work="$BUILD/fuzz-work/$target"        # new inputs of this run
  artifacts="$BUILD/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$work" "$artifacts"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  status=0
  "$fuzzer" "$work" "$corpus" -dict="$ROOT/tests/fuzz/$target.dict" \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$BUILD/fuzz-$target.log" || status=$?
  tail -n 12 "$BUILD/fuzz-$target.log"
  if ((status != 0)); then
    failed+=("$target")
    for f in "$artifacts"/*; do
      [[ -f "$f" ]] || continue
      cp "$f" "$corpus/$(basename "$f")"
      echo "fuzz: $target: kept failing input $corpus/$(basename "$f")" >&2
    done
  fi

  # Minimise: corpus + new inputs -> the inputs that add coverage, plus every regression input.
  merged="$(mktemp -d)"
  "$fuzzer" -merge=1 -max_len="$MAX_LEN" -timeout=10 "$merged" "$corpus" "$work" \
    >"$BUILD/fuzz-$target-merge.log" 2>&1 || {
    echo "fuzz: $target: merge failed (see $BUILD/fuzz-$target-merge.log); corpus unchanged" >&2
    rm -rf "$merged"
    failed+=("$target-merge")
    continue
  }
  for f in "$corpus"/*; do
    [[ -f "$f" ]] && is_regression "$f" && cp "$f" "$merged/"
  done
  rm -rf "$corpus" && mkdir -p "$corpus" && cp "$merged"/* "$corpus"/ && rm -rf "$merged"
  echo "fuzz: $target corpus: $(ls "$corpus" | wc -l) files, $(du -sb "$corpus" | cut -f1) bytes"
done

total=$(du -sb "$ROOT/tests/fuzz/corpus" | cut -f1)
if ((total > 1000000)); then
  echo "fuzz: warning: the corpus is $total bytes (budget 1 MB); drop non-regression inputs" \
    "with the largest sizes or rerun with fewer seconds" >&2
fi

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs kept in tests/fuzz/corpus; logs in $BUILD)" >&2
  exit 1
fi
echo "fuzz: no crashes"
