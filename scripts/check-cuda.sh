#!/usr/bin/env bash
# Compiles every crate, test and bench with `--features cuda,cudnn` (PTX
# kernels included) without linking: the CUDA build cannot rot unnoticed on
# machines without a GPU. Uses its own target folder, so it does not disturb
# the CPU build. About 10 minutes on 2 cores from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}" \
  cargo check --workspace --all-targets --features cuda,cudnn "$@"
