#!/usr/bin/env bash
# Installs the Debian packages the project builds and tests with. Idempotent: apt-get is only
# called when a package is missing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3 python3-numpy
  # Engine: JSON config parsing, GEMM library (OpenMP build, shares the thread pool with ours).
  nlohmann-json3-dev libopenblas-openmp-dev libomp-dev
  # Abseil (Status/StatusOr, flags) and the test framework.
  libabsl-dev googletest libgtest-dev libgmock-dev
  # gRPC/protobuf (see notes: protobuf-compiler-grpc is required even to link gRPC).
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  prometheus-cpp-dev
  # The metrics tests (tests/metrics) scrape a real cluster with prometheus and lint with promtool.
  prometheus
  # The Python client (client/python) and its tests: Debian's gRPC/protobuf bindings, matching
  # the protoc above (grpc_python_plugin comes with protobuf-compiler-grpc).
  python3-grpcio python3-protobuf
  # The deploy tests (tests/deploy) install kubernetes-validate from PyPI into a venv.
  python3-venv
  # Fuzzing and sanitizers (libFuzzer ships with clang's runtime).
  clang libclang-rt-14-dev
  # Public-domain text the demo model is trained on.
  bible-kjv-text
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
