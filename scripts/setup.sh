#!/usr/bin/env bash
# Set up everything: a virtual environment with PyTorch, the project and its test tools,
# and Debian's Chromium for the browser test (when run as root on Debian/Ubuntu).
#   bash scripts/setup.sh            # → .venv/
#   VENV=/path/to/env bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# PyTorch pinned to the release this project is tested with (CPU and CUDA in one wheel on x86_64).
"$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install --quiet -e ".[test]"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test"
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "warning: could not install chromium; the browser test will be skipped"
  else
    echo "note: no chromium on PATH; the browser test will be skipped (apt-get install chromium)"
  fi
fi
echo "ready: . $VENV/bin/activate"
