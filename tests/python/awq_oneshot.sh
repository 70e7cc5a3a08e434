#!/usr/bin/env bash
# quantscope's AWQ save (`quantize --scheme int4:group128:asym:awq --inputs --awq-scales`) of two tiny
# seeded random Llama models (GQA and MHA) against llm-compressor 0.14's oneshot with AWQModifier
# (W4A16_ASYM): same tensors, AWQ scales, smoothed norms and weight_scale within 1e-5 relative, zero
# points and INT4 codes >= 99.9 % identical, everything else bit-identical, same quantization_config,
# transformers' logits cosine within 0.001 of llm-compressor's. The models and llm-compressor's saves
# are built once into ~/.cache/quantscope-ci/awq-oneshot. The libraries' logs go to
# ~/.cache/quantscope-ci/awq-oneshot.err. Usage: tests/python/awq_oneshot.sh BIN | --reference-only.
# Exit 1 on any failure.
set -euo pipefail
if [ "${1:-}" = --reference-only ]; then ARGS=(--reference-only); else ARGS=(--quantscope "$(realpath "$1")"); fi
cd "$(dirname "$0")/../.."
PY=$(bash tests/python/venv.sh)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
LOG=$HOME/.cache/quantscope-ci/awq-oneshot.err
status=0
"$PY" tests/python/awq_oneshot.py "${ARGS[@]}" 2> "$LOG" || status=$?
if [ "$status" != 0 ] && grep -q Traceback "$LOG"; then tail -5 "$LOG" >&2; fi
exit $status
