#!/usr/bin/env bash
# Runs, on a GPU machine, the CUDA tests and the README's GPU benchmarks from the archive
# tools/gpu_bundle.sh made, writing one log per step to OUT_DIR. Run from the repository root
# (the test fixtures are read from the checkout). Each step's exit status is in summary.txt;
# a failing step does not stop the others.
#
# Usage: tools/gpu_check.sh [BUNDLE (default .gpu/bundle.tar.xz)] [OUT_DIR (default $OUT or
#        gpu-results)] [quick]   ("quick": the tests only, no benchmarks)
set -uo pipefail

bundle=${1:-.gpu/bundle.tar.xz}
out=${2:-${OUT:-gpu-results}}
mode=${3:-full}
mkdir -p "$out"
work=$(mktemp -d)
tar -C "$work" -xJf "$bundle" || { echo "gpu_check: cannot unpack $bundle" >&2; exit 1; }
b="$work/bundle"

# The binaries read fixtures from the source path they were built in: make it this checkout
# where nothing is there (a GPU machine), never replacing what is.
src=$(cat "$b/source_dir")
if [[ ! -e "$src" ]]; then
  mkdir -p "$(dirname "$src")" && ln -s "$(pwd -P)" "$src"
elif [[ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]]; then
  echo "gpu_check: fixtures are read from $src (the bundle's checkout), not from here" >&2
fi

cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d "$d" ]] && cuda_libs="$cuda_libs:$d"
done
export LD_LIBRARY_PATH="$b/lib$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

summary="$out/summary.txt"
echo "commit $(cat "$b/commit")" > "$summary"
step() {  # step NAME COMMAND...
  local name=$1
  shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$summary"
}

step nvidia_smi nvidia-smi
step kernels_cuda_test "$b/bin/kernels_cuda_test"
step golden_cuda "$b/bin/golden_test" --gtest_filter='*cuda*'
step generator_cuda "$b/bin/generator_test" --gtest_filter='*cuda*'
step int8_experts "$b/bin/int8_experts_test"
step device_metrics "$b/bin/device_metrics_test"
step kernels_cpu "$b/bin/kernels_test"
[[ "$mode" == quick ]] && exit 0

config=tests/fixtures/config/jamba_v0_1/config.json
step bench_decode "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=16 --batches 1,4,16 --decode-steps 64 --bandwidth-mib 4096
# The same config through transformers' JambaForCausalLM (the image's python3 has torch and
# transformers), for the side-by-side ratio with bench_decode.
step hf_decode python3 bench/hf_side_by_side.py --device cuda --config "$config" \
  --set num_hidden_layers=16 --batches 1,4,16 --decode-steps 64
step bench_prefill "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=16 --batches 1 --prefill-lens 1024,8192,32768
# The same with bf16 activations: one tensor-core pass per product instead of three.
step bench_prefill_bf16 "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=16 --batches 1 --prefill-lens 1024,8192,32768 --matmul-precision bf16
# Decode-shaped products: cuBLAS (MatMul) against the grouped GEMV kernel, bf16 and int8.
step bench_gemv "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=2 --batches 1 --decode-steps 4 --gemv
step bench_gemv_int8 "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=2 --batches 1 --decode-steps 4 --gemv --int8-experts
step bench_contexts "$b/bin/jamba-bench" --device cuda --config "$config" \
  --set num_hidden_layers=8 --batches 1 --contexts 4096,16384,65536,131072 --all-attention
