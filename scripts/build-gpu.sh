#!/usr/bin/env bash
# Builds the binaries a GPU machine runs (xtask and the test binaries, with
# `--features cuda,cudnn`, release profile) on a machine with no CUDA
# toolkit and no driver, and gathers them in target/gpu-bundle/ to carry
# over (`cargo xtask gpu-check` there; README "GPU").
#
# The toolkit and the libraries candle links (nvrtc, curand, cublas,
# cublasLt, cudnn, cudart) come from NVIDIA's PyPI wheels, one release
# (scripts/cuda-toolkit.sh). libcuda comes only with a driver: a stand-in
# with the driver's soname (libcuda.so.1), whose every function reports "no
# device", satisfies the linker; on the GPU machine the real driver's
# library is the one loaded. The wheels' libraries are not bundled (they
# are hundreds of MB): the GPU machine uses its own CUDA 13 libraries.
#
# With a CUDA toolkit installed, none of this is needed:
#   cargo build --release --features cuda,cudnn
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh --libs)"
LINK="$PWD/target/cuda-link"
rm -rf "$LINK" && mkdir -p "$LINK"

# The stand-in libcuda: every driver function cudarc declares, returning
# CUDA_ERROR_NO_DEVICE (100).
CUDARC="$(cargo metadata --format-version 1 --features cuda,cudnn --manifest-path xtask/Cargo.toml \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$(dirname "$CUDARC")/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u \
  | awk '{print "int " $1 "(void) { return 100; }"}' > "$LINK/libcuda-stand-in.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so.1" "$LINK/libcuda-stand-in.c"
ln -s libcuda.so.1 "$LINK/libcuda.so"

# The wheels ship versioned names only (libcublas.so.13): the linker's -lX
# wants libX.so.
for lib in nvrtc curand cublas cublasLt cudnn cudart; do
  found="$(IFS=:; find $CUDA_LIB_DIRS -maxdepth 1 -name "lib$lib.so.*" | sort | head -n 1)"
  [[ -n "$found" ]] || { echo "no lib$lib in the wheels ($CUDA_LIB_DIRS)" >&2; exit 1; }
  ln -sf "$found" "$LINK/lib$lib.so"
done

export RUSTFLAGS="${RUSTFLAGS:-} -L native=$LINK"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
cargo build --release --features cuda,cudnn -p xtask
# The test binaries link too (they stay here: they read the source tree).
cargo test --release --features cuda,cudnn --workspace --no-run

# What travels: xtask, the embedded weights, the sample photographs, the
# configs, and a launcher that points xtask at them.
BUNDLE="$PWD/target/gpu-bundle"
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/datasets"
cp "$CARGO_TARGET_DIR/release/xtask" "$BUNDLE/"
strip "$BUNDLE/xtask"
cp -r crates/model/assets "$BUNDLE/assets"
cp -r datasets/samples "$BUNDLE/datasets/"
cp -r configs "$BUNDLE/configs"
cat > "$BUNDLE/gpu-check.sh" <<'LAUNCHER'
#!/usr/bin/env bash
# On the GPU machine: ./gpu-check.sh [--device cuda:0] [gpu-check flags]
# Needs the driver (libcuda.so.1) and CUDA 13 libraries (cuBLAS, cuRAND,
# NVRTC, cuDNN 9, cudart) on LD_LIBRARY_PATH; PyTorch's venv has them
# under site-packages/nvidia/*/lib.
here="$(cd "$(dirname "$0")" && pwd)"
export COLORIZE_ROOT="$here" COLORIZE_ASSETS="$here/assets"
exec "$here/xtask" gpu-check "$@"
LAUNCHER
chmod +x "$BUNDLE/gpu-check.sh"
# Compressed to travel (xtask carries candle's PTX as text: 63 MB, 18 MB
# compressed; the machines' carry limit is 64 MiB).
tar -C "$(dirname "$BUNDLE")" -cJf "$BUNDLE.tar.xz" "$(basename "$BUNDLE")"
du -sh "$BUNDLE" "$BUNDLE.tar.xz"
echo "bundle: $BUNDLE.tar.xz (there: tar -xJf gpu-bundle.tar.xz && gpu-bundle/gpu-check.sh --device cuda:0)"
