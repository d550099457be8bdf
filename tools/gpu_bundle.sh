#!/usr/bin/env bash
# Packs the CUDA tests and benchmarks of a CUDA-enabled build, with the shared libraries they
# load from this machine's Debian packages (abseil, OpenBLAS, ...), into one archive that a GPU
# machine without those packages (and without network) can run: tools/gpu_check.sh there.
#
# Left out on purpose: glibc and the C++ runtime (the GPU machine's are at least as new: builds
# here use Debian 12's glibc 2.36, and newer glibc runs older binaries), and the CUDA driver,
# runtime and cuBLAS (the GPU machine's toolkit provides them; both are CUDA 13).
#
# Usage: tools/gpu_bundle.sh [BUILD_DIR (default build-cuda)] [OUT (default .gpu/bundle.tar.xz)]
# The build must have been configured with -DJAMBA_ENABLE_CUDA=ON and built.
set -euo pipefail

build=${1:-build-cuda}
out=${2:-.gpu/bundle.tar.xz}
cd "$(dirname "$0")/.."

if [[ ! -x "$build/tests/kernels/cuda/kernels_cuda_test" ]]; then
  echo "gpu_bundle: $build has no CUDA tests (configure with -DJAMBA_ENABLE_CUDA=ON and build)" >&2
  exit 1
fi

# Tests with CUDA cases, and the benchmark.
binaries=(
  tests/kernels/cuda/kernels_cuda_test
  tests/engine/runtime/golden_test
  tests/engine/runtime/generator_test
  tests/engine/runtime/int8_experts_test
  tests/kernels/kernels_test
  tests/metrics/device_metrics_test
  bench/jamba-bench
)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/lib"
for b in "${binaries[@]}"; do
  [[ -x "$build/$b" ]] || { echo "gpu_bundle: $build/$b is missing; build it first" >&2; exit 1; }
  cp "$build/$b" "$stage/bundle/bin/"
done
strip --strip-unneeded "$stage"/bundle/bin/*

# Every shared library the binaries load, except the C/C++ runtime and CUDA's.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+\.|libgcc_s\.|libcuda|libcudart|libcublas|libnvidia)'
for b in "$stage"/bundle/bin/*; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $skip ]] && continue
  cp -L "$path" "$stage/bundle/lib/$name"
done
strip --strip-unneeded "$stage"/bundle/lib/* 2>/dev/null || true

# Where the binaries look for the test fixtures (compiled in), for gpu_check.sh to provide.
echo "$(pwd)" > "$stage/bundle/source_dir"
git rev-parse HEAD > "$stage/bundle/commit" 2>/dev/null || echo unknown > "$stage/bundle/commit"

mkdir -p "$(dirname "$out")"
tar -C "$stage" -cJf "$out" bundle
echo "gpu_bundle: $out ($(du -h "$out" | cut -f1)), $(ls "$stage/bundle/lib" | wc -l) libraries," \
     "commit $(cat "$stage/bundle/commit")"
