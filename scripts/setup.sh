#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#   scripts/setup.sh          runtime: detection, training, phantom
#   scripts/setup.sh --dev    plus the test tools (pytest, pydicom, slicer-core for the MRML tests)
# torch is installed first and pinned, so pip takes the local CPU wheel instead of the CUDA build
# (on a CUDA machine, install your CUDA torch into .venv first and the pin keeps whatever 2.x you have: see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" install "$TORCH_SPEC" numpy  # numpy too, so importing torch below does not warn
fi
TORCH_NOW=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
"${PIP[@]}" install -c <(echo "torch==$TORCH_NOW") -e ".$extras"
echo "environment ready: .venv (torch $TORCH_NOW)"
