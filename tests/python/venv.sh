#!/usr/bin/env bash
# Creates or reuses the CI's Python venv (~/.cache/quantscope-ci/venv) with the
# reference packages the Python tests import: numpy, safetensors, torch (via
# hqq), hqq and llmcompressor. Idempotent and quick when everything imports.
# Prints the venv's python on stdout (everything else goes to stderr).
set -euo pipefail
VENV=${QUANTSCOPE_CI_VENV:-$HOME/.cache/quantscope-ci/venv}
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV" >&2
fi
# find_spec, not import: importing llmcompressor alone takes tens of seconds.
HAVE='import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("numpy", "safetensors", "torch", "hqq", "llmcompressor")))'
if ! "$PY" -c "$HAVE" >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check numpy safetensors hqq llmcompressor >&2
    "$PY" -c "$HAVE" >&2
fi
echo "$PY"
