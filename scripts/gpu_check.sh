#!/usr/bin/env bash
# GPU check (issue 11): embedding speed, torch.compile, the demo on CUDA and the GPU tests, in about
# 5 minutes, on a CUDA machine without network. Run it from the repository root:
#
#   bash scripts/gpu_wheels.sh                  # here, with network: the missing wheels → .whl/
#   bash scripts/gpu_check.sh [JPEG_FOLDER [DEMO_IMAGES]]      # there, on the CUDA machine
#   bash scripts/gpu_check.sh --dry-run [JPEG_FOLDER]          # no GPU: each step on CPU, tiny
#
# JPEG_FOLDER: images for scripts/bench_embed.py; default the bundled sample
#   (dinosearch/sample/images: 320 256-px chest X-ray JPEGs, the kind of the issue's figures),
#   repeated to $GPU_CHECK_N images.
# DEMO_IMAGES: labelled folder or manifest for `dinosearch demo`; default
#   JPEG_FOLDER/../manifest.csv or JPEG_FOLDER/manifest.csv when present, else JPEG_FOLDER when it has labelled sub-folders,
#   else the bundled sample (dinosearch/sample, 320 films).
#
# Python: $PYTHON (default python3) with PyTorch + torchvision for CUDA preinstalled. What else is
# missing comes from the wheels in $GPU_CHECK_WHEELS (default .whl/; made by scripts/gpu_wheels.sh
# for the target's Python, 3.12 by default), installed with no index into /tmp/dinosearch-site.
#
# Prints, most important first: the GPU and versions; bench_embed ViT-B/14 (random weights: it
# measures speed) by default, then with --half --compile (the fastest forward it offers), then the
# loader alone (everything but the forward); the GPU tests; the demo (ViT-B/14) on CUDA;
# bench_embed ViT-B/14 --compile; ViT-S/14 default and --half --compile. Each step has a time cap
# and the whole run stops after $GPU_CHECK_SECONDS (default 300); a step that runs out says so
# and the next one starts; steps past the budget say "skipped". $GPU_CHECK_N images per bench
# (default 32768 on CUDA, so that starting the workers is a small part of each timing). A copy
# goes to $GPU_CHECK_LOG (default /tmp/gpu_check.log).
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY=1
  shift
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
IMAGES="${1:-dinosearch/sample/images}"
if [[ ! -d "$IMAGES" ]]; then
  echo "gpu_check: $IMAGES is not a folder; pass a folder of JPEG images" >&2
  exit 2
fi
if [[ ! -f dinosearch/__init__.py ]]; then
  echo "gpu_check: run me from the repository root (dinosearch/ not found in $PWD)" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
TOTAL="${GPU_CHECK_SECONDS:-300}"
LOG="${GPU_CHECK_LOG:-/tmp/gpu_check.log}"
exec > >(tee "$LOG") 2>&1

# Wheels brought along, then the repository itself, ahead of anything installed.
SITE=/tmp/dinosearch-site
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  echo "== installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE (no index)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || exit 1
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

step() {  # step CAP_SECONDS TITLE COMMAND...: run with the smaller of CAP and the time left
  local cap=$1 title=$2
  shift 2
  local left=$((TOTAL - SECONDS))
  ((left < cap)) && cap=$left
  echo
  echo "== $title  [cap ${cap}s, ${SECONDS}s elapsed]"
  echo "\$ $*"
  if ((cap <= 5)); then
    echo "-- skipped: the ${TOTAL}s budget is spent"
    return
  fi
  timeout --kill-after=10 "$cap" "$@"
  local rc=$?
  ((rc == 124 || rc == 137)) && echo "-- timed out after ${cap}s" || echo "-- exit $rc"
  return $rc
}

bench() {  # bench CAP BACKBONE [FLAGS...]: bench_embed, pipeline vs bare forward
  local cap=$1 bb=$2
  shift 2
  step "$cap" "bench_embed $bb ${*:-default}" "$PY" scripts/bench_embed.py --images "$IMAGES" \
    --backbone "$bb" --weights random --device "$DEVICE" --n "$N" --repeats 2 "$@"
}

if ((DRY)); then
  DEVICE=cpu N="${GPU_CHECK_N:-64}" BIG=dinov2_tiny_test SMALL=""
  echo "gpu_check --dry-run: CPU, the tiny test backbone, $N images; --half/--compile left out (CUDA only)"
  DEMO_FLAGS=(--backbone dinov2_tiny_test --image-size 56 --views 1 --epochs 2)
else
  DEVICE=cuda N="${GPU_CHECK_N:-32768}" BIG=dinov2_vitb14 SMALL=dinov2_vits14
  DEMO_FLAGS=(--backbone dinov2_vitb14)
  export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"  # the tests' conftest hides GPUs otherwise
fi

step 30 "environment" "$PY" - "$DEVICE" <<'EOF' || exit 1
import importlib, sys, torch
device = sys.argv[1]
print(f"python {sys.version.split()[0]}  torch {torch.__version__}  cuda {torch.version.cuda}")
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device; use --dry-run on a CPU machine")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB; {torch.get_num_threads()} threads")
missing = []
for name in ["dinosearch", "timm", "torchvision", "pandas", "pyarrow", "faiss", "pydicom", "pytest"]:
    try:
        importlib.import_module(name)
    except ImportError as e:
        missing.append(f"{name} ({e})")
if missing:
    sys.exit("gpu_check: missing " + ", ".join(missing) + "; bring their wheels in .whl/")
EOF

bench 60 "$BIG"
((DRY)) || bench 150 "$BIG" --half --compile
bench 30 "$BIG" --loader-only  # the rate a faster model would wait for

# Only the files with GPU tests: the others import what a CUDA image may lack (streamlit, ray).
mapfile -t GPU_TESTS < <(grep -l "pytest.mark.gpu" tests/test_*.py)
step 90 "GPU tests" "$PY" -m pytest -q -p no:randomly -p no:cacheprovider -m gpu -rs \
  "${GPU_TESTS[@]}"  # they skip on a dry run, saying why

DEMO="${2:-}"
if [[ -z "$DEMO" ]]; then
  for candidate in "$IMAGES/../manifest.csv" "$IMAGES/manifest.csv"; do
    [[ -z "$DEMO" && -f "$candidate" ]] && DEMO="$candidate"
  done
  if [[ -z "$DEMO" ]] && find "$IMAGES" -mindepth 2 -maxdepth 2 -type f | grep -q .; then
    DEMO="$IMAGES"
  fi
  [[ -z "$DEMO" ]] && DEMO=dinosearch/sample/manifest.csv && echo "demo: no labels by $IMAGES, using the bundled sample"
fi
ROOT=$(mktemp -d /tmp/gpu-check-demo.XXXXXX)
step 90 "dinosearch demo on $DEVICE" "$PY" -m dinosearch demo --images "$DEMO" --root "$ROOT" \
  --name gpu-check --weights random --device "$DEVICE" --bootstrap 200 --no-progress \
  "${DEMO_FLAGS[@]}"
rm -rf "$ROOT"

if ((!DRY)); then
  bench 150 "$BIG" --compile
  bench 60 "$SMALL"
  bench 150 "$SMALL" --half --compile
fi
echo
echo "gpu_check: done in ${SECONDS}s; output also in $LOG"
