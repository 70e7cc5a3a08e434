#!/usr/bin/env bash
# GPTQ and AWQ files packed by the reference libraries themselves (GPTQModel, AutoAWQ), read by
# `quantscope diff` (issue 14). The libraries go into a separate venv (~/.cache/quantscope-ci/refvenv)
# installed with --no-deps, so they never change the shared venv: it sees the shared venv's torch,
# transformers and numpy through a .pth file. Versions are pinned (the ones the test was written against).
# Usage: tests/python/gptq_awq.sh BIN
# Env: QS_VENV (the shared venv, default ~/.cache/quantscope-ci/venv), QS_REFVENV.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
SHARED=${QS_VENV:-$HOME/.cache/quantscope-ci/venv}
REFVENV=${QS_REFVENV:-$HOME/.cache/quantscope-ci/refvenv}
PY="$REFVENV/bin/python"
PKGS=(autoawq==0.2.9 gptqmodel==7.7.0 pypcre==0.6.4 logbar==0.4.15 device-smi==0.5.7 tokenicer==0.0.14
      defuser==0.0.28 threadpoolctl==3.8.0 dill==0.4.1)
if [ ! -x "$PY" ]; then
    python3 -m venv "$REFVENV" >&2
fi
SITE=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
"$SHARED/bin/python" -c 'import site; print(site.getsitepackages()[0])' > "$SITE/quantscope-shared.pth"
HAVE='import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("awq", "gptqmodel", "pcre", "torch")))'
if ! "$PY" -c "$HAVE" >/dev/null 2>&1; then
    "$REFVENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "${PKGS[@]}" >&2
fi
status=0
"$PY" tests/python/gptq_awq_reference.py --quantscope "$BIN" > "$REFVENV.out" 2> "$REFVENV.err" || status=$?
grep -E '^(ok|FAIL)' "$REFVENV.out" || true
if [ "$status" != 0 ]; then tail -5 "$REFVENV.err"; fi
exit $status
