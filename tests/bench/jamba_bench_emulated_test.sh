#!/usr/bin/env bash
# jamba-bench's GPU modes (the commands tools/gpu_check.sh runs on a GPU, on a tiny config)
# through the CUDA backend on the emulated device (kernels/cuda/emulator): each must finish
# and print its table. This checks that the benchmark code runs on a CUDA backend - copy
# bandwidth, roofline, the GEMV comparison (bf16 and int8), prefill lengths, the context
# sweep against all-attention, bf16 activations - not its figures, which here measure the emulator.
#   jamba_bench_emulated_test.sh BENCH CONFIG
set -uo pipefail
bench=$1
config=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0
run() {  # run EXPECTED_LINE_REGEX ARGS...
  local want=$1 ok=1
  shift
  if ! "$bench" --device cuda --config "$config" --batches 1,2 --decode-steps 2 --prompt-len 8 \
      --bandwidth-mib 16 "$@" > "$out" 2>&1; then
    echo "FAIL: jamba-bench $* exited non-zero:"; cat "$out"; fail=1; return
  fi
  for re in "device: cuda +memory bandwidth \(device-to-device copy" \
            "batch-1 decode: [0-9.]+ tok/s of a [0-9.]+ tok/s roofline" "$want"; do
    grep -Eq "$re" "$out" || { echo "FAIL: jamba-bench $*: no line matching '$re':"; cat "$out"; ok=0; }
  done
  if ((ok)); then echo "ok: jamba-bench $*"; else fail=1; fi
}
run "^ +2 +[0-9.]+ +[0-9.]+ +[0-9.]+$"
run "decode products 16 x 32, bf16 weights" --gemv
run "decode products 16 x 32, i8 weights" --gemv --int8-experts
run "^ +64 +[0-9.]+$" --prefill-lens 32,64
run "matmul precision: bf16" --prefill-lens 64 --matmul-precision bf16
run "^ +128 +[0-9.]+ +[0-9.]+ +[0-9.]+$" --contexts 64,128 --all-attention --prefill-chunk 32
exit $fail
