#!/usr/bin/env bash
# `quantscope diff` against numpy on compressed-tensors' own decompression (issue 14), on MiniLM
# F32 and BF16: llm-compressor's data-free saves (W4A16, W8A16, FP8_DYNAMIC, FP8_BLOCK, NVFP4A16, MXFP4A16, MXFP8A16; built or
# reused by make_reference.py) and quantscope's own saves (int4 group-128 asymmetric, int8 channel).
# Usage: tests/python/diff.sh BIN
# Env: QS_MODEL, QS_VENV, QS_REFERENCE as in reference.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
PY=${QS_VENV:-$HOME/.cache/quantscope-ci/venv}/bin/python
REF=${QS_REFERENCE:-$HOME/.cache/quantscope-ci/reference}
MODEL=${QS_MODEL:-sample-models/minilm}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PRESETS=(W4A16 W8A16 FP8_DYNAMIC FP8_BLOCK NVFP4A16 MXFP4A16 MXFP8A16)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" tests/python/make_reference.py "$REF" --model "$MODEL" --presets "${PRESETS[@]}" > "$WORK/log" 2>&1 \
    || { tail -3 "$WORK/log"; exit 1; }
declare -A ORIG=([f32]="$MODEL" [bf16]="$REF/minilm-bf16")
status=0
for d in f32 bf16; do
    "$BIN" quantize "${ORIG[$d]}" "$WORK/$d/own-int4" --scheme int4:group128:minmax:asym > /dev/null
    "$BIN" quantize "${ORIG[$d]}" "$WORK/$d/own-int8" --scheme int8:channel > /dev/null
    "$PY" tests/python/check_diff.py --quantscope "$BIN" "${ORIG[$d]}" "${PRESETS[@]/#/$REF/$d/}" \
        "$WORK/$d/own-int4" "$WORK/$d/own-int8" 2> "$WORK/err" || { status=1; tail -3 "$WORK/err"; }
    rm -rf "${WORK:?}/$d" # one dtype's saves on disk at a time
done
exit $status
