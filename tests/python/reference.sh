#!/usr/bin/env bash
# llm-compressor reference checks (issue 12). Without BIN: builds (or reuses) llm-compressor's
# saves of MiniLM F32 and BF16 for every preset and prints their transformers cosines.
# With BIN: also saves each preset's short form with quantscope, compares it tensor for tensor
# with llm-compressor's (compare_saves.py) and loads/runs it (load_and_run.py), and checks that
# `quantscope report` on the BF16 copy prints the MSE of each decompressed BF16 save.
# Usage: tests/python/reference.sh [BIN]
# Env: QS_MODEL (default sample-models/minilm), QS_VENV (default ~/.cache/quantscope-ci/venv), QS_REFERENCE (default ~/.cache/quantscope-ci/reference)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-}
PY=${QS_VENV:-$HOME/.cache/quantscope-ci/venv}/bin/python
REF=${QS_REFERENCE:-$HOME/.cache/quantscope-ci/reference}
MODEL=${QS_MODEL:-sample-models/minilm}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=tests/python

# preset -> quantscope short form and extra flags (the issue's table)
declare -A FORM=(
    [W8A16]="int8:group128" [W4A16]="int4:group128" [W4A16_ASYM]="int4:group128:minmax:asym"
    [W8A8]="int8:channel --activations int8-dynamic" [FP8_DYNAMIC]="e4m3:channel --activations fp8-dynamic"
    [FP8_BLOCK]="e4m3:block128 --activations fp8-dynamic"
    [NVFP4A16]="nvfp4" [MXFP4A16]="mxfp4" [MXFP8A16]="mxfp8")
PRESETS=(W8A16 W4A16 W4A16_ASYM W8A8 FP8_DYNAMIC FP8_BLOCK NVFP4A16 MXFP4A16 MXFP8A16)
# QS_PRESETS restricts the run (CI: the presets quantscope saves today).
if [ -n "${QS_PRESETS:-}" ]; then read -r -a PRESETS <<< "$QS_PRESETS"; fi
# Minimum mean cosine: llm-compressor's own saves give >= 0.997 (8-bit) and 0.950-0.976 (4-bit).
declare -A MIN_COS=([W8A16]=0.99 [W8A8]=0.99 [FP8_DYNAMIC]=0.99 [FP8_BLOCK]=0.99 [MXFP8A16]=0.99
    [W4A16]=0.93 [W4A16_ASYM]=0.93 [NVFP4A16]=0.93 [MXFP4A16]=0.93)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The libraries log a lot: keep stderr aside, show it only for an uncaught Python error
# (the scripts themselves report failures as FAIL: lines on stdout).
run() {
    local rc=0
    "$@" > "$WORK/stdout" 2> "$WORK/stderr" || rc=$?
    grep -v -e '^$' -e ' | WARNING - ' -e ' | INFO - ' "$WORK/stdout" || true
    if [ "$rc" != 0 ] && grep -q Traceback "$WORK/stderr"; then tail -5 "$WORK/stderr" >&2; fi
    return "$rc"
}

run "$PY" $T/make_reference.py "$REF" --model "$MODEL" --presets "${PRESETS[@]}"
declare -A ORIG=([f32]="$MODEL" [bf16]="$REF/minilm-bf16")
status=0
# load_and_run.py DTYPE PREFIX DIR...: one call (one torch import) per threshold
load_and_run() {
    local d=$1 prefix=$2 th dirs
    shift 2
    for th in 0.99 0.93; do
        dirs=()
        for dir in "$@"; do
            if [ "${MIN_COS[$(basename "$dir")]}" = $th ]; then dirs+=("$dir"); fi
        done
        if [ ${#dirs[@]} -eq 0 ]; then continue; fi
        run "$PY" $T/load_and_run.py "${ORIG[$d]}" "${dirs[@]}" --threshold $th | sed "s|^|$prefix |" || status=1
    done
}
for d in f32 bf16; do
    load_and_run $d llm-compressor "${PRESETS[@]/#/$REF/$d/}"
done
if [ -z "$BIN" ]; then exit $status; fi

for d in f32 bf16; do
    saves=()
    for p in "${PRESETS[@]}"; do
        out="$WORK/$d/$p"
        # shellcheck disable=SC2086 # FORM holds the scheme and its flags
        if ! "$BIN" quantize "${ORIG[$d]}" "$out" --scheme ${FORM[$p]} > "$WORK/log" 2>&1; then
            echo "FAIL: $d/$p: quantscope quantize --scheme ${FORM[$p]}: $(tail -1 "$WORK/log")"; status=1; continue
        fi
        "$PY" $T/compare_saves.py "$REF/$d/$p" "$out" > "$WORK/cmp" || status=1
        grep '^FAIL' "$WORK/cmp" || true
        echo "$d/$p (${FORM[$p]}): $(tail -1 "$WORK/cmp")"
        saves+=("$out")
    done
    if [ ${#saves[@]} -gt 0 ]; then load_and_run $d quantscope "${saves[@]}"; fi
    rm -rf "${WORK:?}/$d" # one dtype's saves on disk at a time
done
# `quantscope report` on the BF16 copy gives the MSE of what each llm-compressor save holds,
# decompressed by compressed-tensors (report_matches_save.py).
args=()
for p in "${PRESETS[@]}"; do
    read -r s _ <<< "${FORM[$p]}"
    args+=("$s" "$REF/bf16/$p")
done
run "$PY" $T/report_matches_save.py "$BIN" "${ORIG[bf16]}" "${args[@]}" || status=1
exit $status
