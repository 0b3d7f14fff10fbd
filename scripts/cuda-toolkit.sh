#!/usr/bin/env bash
# NVIDIA's CUDA toolkit (nvcc, headers, runtime) from PyPI wheels, for
# building the `cuda`/`cudnn` features on a machine without a toolkit. No
# driver is needed to compile.
#
#   eval "$(scripts/cuda-toolkit.sh)"        # toolkit only (cargo check)
#   eval "$(scripts/cuda-toolkit.sh --libs)" # and the libraries a link needs
#
# Prints the environment to use it (CUDA_ROOT, CUDA_PATH, PATH,
# CUDA_COMPUTE_CAP, and with --libs the library folders). Every wheel is
# pinned to one release: the GPU machines' driver runs CUDA 13.0, and PTX
# from a newer nvcc (or an unpinned nvidia-nvvm) does not load there.
# CUDA_COMPUTE_CAP defaults to 90 (H100/H200); set it for your card.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CUDA_VENV:-$PWD/target/cuda-venv}"
# CUDA 13.0 update 2, every part pinned (the libraries number themselves).
packages=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
)
if [[ "${1:-}" == "--libs" ]]; then
  packages+=(nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14 nvidia-cudnn-cu13==9.13.1.26)
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" >&2
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
CU="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
echo "export CUDA_ROOT='$CU' CUDA_PATH='$CU' PATH='$CU/bin':\"\$PATH\" CUDA_COMPUTE_CAP='${CUDA_COMPUTE_CAP:-90}'"
if [[ "${1:-}" == "--libs" ]]; then
  NV="$(dirname "$CU")"
  libs="$(find "$NV" -name 'lib*.so*' -printf '%h\n' | sort -u | tr '\n' ':')"
  echo "export CUDA_LIB_DIRS='${libs%:}'"
fi
