#!/usr/bin/env bash
# quantscope's GPTQ save (`quantize --scheme int4:group128:gptq --inputs`) of MiniLM against
# llm-compressor 0.14's oneshot with GPTQModifier on sample-models/calibration.txt: same tensors,
# scales identical, block 0's INT4 codes >= 99.9 % identical, all codes as identical as llm-compressor
# is to itself in another sample order, transformers cosine within 0.001 of llm-compressor's and above
# round-to-nearest's, same quantization_config. llm-compressor's saves are built once into
# ~/.cache/quantscope-ci/gptq-oneshot. The libraries' logs go to
# ~/.cache/quantscope-ci/gptq-oneshot.err. Usage: tests/python/gptq_oneshot.sh BIN. Exit 1 on any failure.
set -euo pipefail
BIN=$(realpath "$1")
cd "$(dirname "$0")/../.."
PY=$(bash tests/python/venv.sh)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
LOG=$HOME/.cache/quantscope-ci/gptq-oneshot.err
status=0
"$PY" tests/python/gptq_oneshot.py --quantscope "$BIN" 2> "$LOG" || status=$?
if [ "$status" != 0 ] && grep -q Traceback "$LOG"; then tail -5 "$LOG" >&2; fi
exit $status
