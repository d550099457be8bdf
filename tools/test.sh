#!/usr/bin/env bash
# The README's test command (and CI's, via .ci/run): installs the build dependencies, builds
# everything in build/ (Release), runs every test with ctest (cluster and load tests last,
# serially), then replays the fuzz corpus and
# the parser tests under ASan + UBSan (tools/fuzz_replay_asan.sh). Exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-2}"
"$ROOT/tools/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j "$JOBS"
# Tests that start whole clusters of processes and time them (labels load, cluster) run one
# at a time after the rest, so they do not compete for the cores with other tests.
(cd "$BUILD" && ctest --output-on-failure -j "$JOBS" --timeout 600 -LE "^(load|cluster)$")
(cd "$BUILD" && ctest --output-on-failure -j 1 --timeout 600 -L "^(load|cluster)$")
JOBS="$JOBS" "$ROOT/tools/fuzz_replay_asan.sh"
echo "test.sh: all tests passed"
