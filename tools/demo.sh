#!/usr/bin/env bash
# The README's main command: installs the build dependencies (tools/setup.sh), builds the
# cluster's binaries in build/, starts a local cluster on the bundled demo model (2 expert
# workers, 2 layer workers, the gateway: five processes on 127.0.0.1), streams a completion
# through `jambactl generate`, and stops the cluster. Extra arguments are passed to
# `jambactl generate` (e.g. --prompt "And God said" --temperature 0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
"$ROOT/tools/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" \
  --target jambactl jamba-gateway jamba-layer-worker jamba-expert-worker

LOG="$(mktemp -t jamba-demo-cluster.XXXXXX)"
"$BUILD/cli/jambactl" cluster up --model "$ROOT/models/jamba-demo" \
  --layer-workers 2 --expert-workers 2 --port 0 >"$LOG" 2>&1 &
CLUSTER=$!
stop_cluster() {
  kill -TERM "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null || true
  rm -f "$LOG"
}
trap stop_cluster EXIT

for _ in $(seq 1 600); do
  grep -q "^cluster ready" "$LOG" && break
  kill -0 "$CLUSTER" 2>/dev/null || { cat "$LOG" >&2; echo "demo: the cluster failed to start" >&2; exit 1; }
  sleep 0.2
done
grep -q "^cluster ready" "$LOG" || { cat "$LOG" >&2; echo "demo: cluster start timed out" >&2; exit 1; }
grep -E "^(expert|layer) worker|^cluster ready" "$LOG" >&2
TARGET="$(sed -n 's/^cluster ready: gateway //p' "$LOG")"

args=(--prompt "In the beginning" --max-new-tokens 64 --temperature 0.7 --top-p 0.9 --seed 7)
(($#)) && args=("$@")
"$BUILD/cli/jambactl" generate --target "$TARGET" "${args[@]}"
