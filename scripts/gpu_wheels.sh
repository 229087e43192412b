#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh needs on a CUDA machine without network, fetched here (with
# network) into .whl/ (git-ignored). Run it from anywhere:
#
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12 → .whl/ (about 39 MB)
#   WHEEL_DIR=/path bash scripts/gpu_wheels.sh 3.11
#
# A CUDA image with PyTorch usually has numpy, pandas, pyarrow, pillow, timm, safetensors,
# huggingface_hub, tqdm, pytest and hypothesis; these are what it lacks: faiss (CPU build: the GPU
# build needs CUDA-12 libraries), DICOM decoding (pydicom + its codec plugins) and the test plugins.
# Each wheel's own requirements are checked against that list; anything else is named at the end.
# Then, on the CUDA machine, from the repository root: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${1:-3.12}"
DEST="${WHEEL_DIR:-.whl}"
PACKAGES=(
  "faiss-cpu>=1.8" "pydicom>=3.0" "python-gdcm>=3.0.10" "pylibjpeg>=2.0" "pylibjpeg-openjpeg>=2.0"
  "pyjpegls>=1.2" "pytest-randomly>=3.15"
)
PRESENT="numpy packaging pytest pandas pyarrow pillow timm safetensors huggingface-hub tqdm hypothesis torch torchvision"

mkdir -p "$DEST"
# pip matches manylinux tags exactly, so name the usual ones (see the device notes).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" "${PACKAGES[@]}"

python3 - "$DEST" "$PRESENT" <<'EOF'
import re, sys, zipfile
from pathlib import Path

dest, present = Path(sys.argv[1]), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
wheels = sorted(dest.glob("*.whl"))
names = [norm(w.name.split("-")[0]) for w in wheels]
have = set(names)
if len(names) != len(have):
    sys.exit(f"gpu_wheels: two versions of one package in {dest}; pip installs neither. Empty it and rerun.")
missing = set()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                req = norm(re.split(r"[ ;<>=!~(\[]", line.split(":", 1)[1].strip())[0])
                if req not in have | present:
                    missing.add(f"{req} (for {wheel.name})")
size = sum(w.stat().st_size for w in wheels) / 2**20
print(f"gpu_wheels: {len(wheels)} wheels, {size:.0f} MiB in {dest}")
if missing:
    print("gpu_wheels: also needed unless the CUDA machine has them: " + ", ".join(sorted(missing)))
EOF
