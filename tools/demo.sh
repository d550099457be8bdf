#!/usr/bin/env bash
# The README's main command: installs the build dependencies (tools/setup.sh), builds
# jamba-run in build/, and streams a completion from the bundled demo model. Extra arguments
# are passed to jamba-run (e.g. --prompt "And God said" --temperature 0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
"$ROOT/tools/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target jamba-run
args=(--prompt "In the beginning" --max-new-tokens 64 --temperature 0.7 --top-p 0.9 --seed 7)
(($#)) && args=("$@")
exec "$BUILD/cli/jamba-run" --model "$ROOT/models/jamba-demo" "${args[@]}"
