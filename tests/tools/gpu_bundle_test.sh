#!/usr/bin/env bash
# tools/gpu_bundle.sh + tools/gpu_check.sh end to end on this machine: the archive unpacks, its
# binaries start with only the bundled libraries beside the C/C++ runtime and CUDA's, and the
# test steps pass (their CUDA cases skip without a GPU). Args: SOURCE_DIR BUILD_DIR.
set -euo pipefail
src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src"
XZ_OPT=-1 tools/gpu_bundle.sh "$build" "$tmp/bundle.tar.xz"

# Every library a binary resolves outside the bundle must be one gpu_bundle.sh leaves out.
mkdir "$tmp/unpacked"
tar -C "$tmp/unpacked" -xJf "$tmp/bundle.tar.xz"
allowed='/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libcuda)\.so'
for bin in "$tmp"/unpacked/bundle/bin/*; do
  LD_LIBRARY_PATH="$tmp/unpacked/bundle/lib" ldd "$bin" | awk '$3 ~ /^\//{print $3}' |
    while read -r lib; do
      [[ "$lib" == "$tmp"/* || "$lib" =~ $allowed ]] ||
        { echo "FAIL: $(basename "$bin") loads $lib from outside the bundle"; exit 1; }
    done
done

tools/gpu_check.sh "$tmp/bundle.tar.xz" "$tmp/out" quick
for step in kernels_cuda_test golden_cuda generator_cuda int8_experts device_metrics kernels_cpu; do
  grep -q "^$step rc=0 " "$tmp/out/summary.txt" ||
    { echo "FAIL: step $step"; cat "$tmp/out/summary.txt"; tail -20 "$tmp/out/$step.log"; exit 1; }
done
grep -q "PASSED" "$tmp/out/kernels_cuda_test.log"
echo "gpu bundle OK"
