#!/usr/bin/env bash
# Set up everything: a virtual environment with PyTorch, the project and its test tools,
# and Debian's Chromium for the browser test and Orthanc + its DICOMweb plugin for the PACS tests
# (when run as root on Debian/Ubuntu).
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
if [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's orthanc and orthanc-dicomweb for the PACS tests (service not started)"
    # The tests start their own Orthanc; the package's service must never start (nor stay enabled).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    { apt-get update -qq >/dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; } \
      || echo "warning: could not install orthanc; the PACS tests will be skipped"
  else
    echo "note: no Orthanc; the PACS tests will be skipped (apt-get install orthanc orthanc-dicomweb)"
  fi
fi
echo "ready: . $VENV/bin/activate"
