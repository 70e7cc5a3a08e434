#!/usr/bin/env bash
# Exports both sample models under several schemes with BIN (packed and
# fake-quant), then checks each pair with check_export.py in a venv of its own.
# Usage: tests/python/run.sh [BIN]   (default target/debug/quantscope)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/debug/quantscope}
VENV=target/pyenv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check numpy safetensors
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
models=(sample-models/teaching.safetensors)
[ -f sample-models/minilm/model.safetensors ] && models+=(sample-models/minilm)
schemes=(int8:channel:minmax int8:tensor:mse:asym int8:group64:minmax:asym int4:group32:p99.9
         e4m3:tensor:minmax e4m3:channel:mse e4m3:group64:minmax e5m2:channel:minmax e4m3:tensor:minmax:asym
         int4:group64:hqq:asym int8:channel:entropy:asym int8:group128 int4:group128
         int4:group128:minmax:asym int3:channel:minmax:asym int2:tensor:minmax:asym e4m3:channel)
for m in "${models[@]}"; do
    for s in "${schemes[@]}"; do
        d="$WORK/$(basename "$m")-${s//:/_}"
        mkdir -p "$d"
        "$BIN" quantize "$m" "$d/packed" --scheme "$s" > /dev/null
        "$BIN" quantize "$m" "$d/fake" --scheme "$s" --fake-quant > /dev/null
        "$VENV/bin/python" tests/python/check_export.py "$d/packed" "$d/fake"
        rm -rf "$d" # the disk holds one pair at a time
    done
done
