#!/usr/bin/env bash
# One entry point for the llama.cpp reference side of the GGUF tests; everything is cached under
# ~/.cache/quantscope-ci (QS_GGUF overrides the model folder, QUANTSCOPE_CI_CACHE the root):
#   1. gguf_venv.sh: venv + gguf 0.19.0 + llama-cpp-python 0.3.36 (cached non-native wheel),
#      the sdist, and llama-tools/llama-imatrix;
#   2. make_gguf_models.py into $QS_GGUF (default ~/.cache/quantscope-ci/gguf): tiny Llama
#      (F32/F16/BF16), MiniLM (F32/F16), the tiny Llama's imatrix (.gguf and legacy .dat);
#   3. llama-quantize reference outputs (gguf_reference.py quantize = llama_model_quantize) in
#      $QS_GGUF/ref/, each with a NAME.types.json (gguf_reference.py types) and NAME.log:
#        tiny-llama-f16.<P>.gguf and tiny-llama-f32.<P>.gguf for every preset P below,
#        tiny-llama-bf16.<P>.gguf for Q8_0 Q6_K Q4_K_M Q4_0,
#        tiny-llama-f16.<P>.imatrix.gguf for Q4_K_M IQ4_XS Q4_0 Q2_K (imatrix tiny-llama.imatrix.gguf),
#        tiny-llama-f16.Q4_K_M.imatrix-dat.gguf (the same imatrix in the legacy .dat format),
#        minilm-f16.<P>.gguf for Q4_K_M Q8_0 Q4_0 IQ4_XS (384-wide rows: the fallback types);
#      an output is remade when missing or older than its source (or its imatrix);
#   4. sanity: every tiny Llama output loads in llama_cpp.Llama and gives finite logits for a
#      prompt, every MiniLM output a finite embedding.
# Prints the paths it made on stdout, then the sanity lines; progress goes to stderr.
# Exit 1 on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE=${QUANTSCOPE_CI_CACHE:-$HOME/.cache/quantscope-ci}
OUT=${QS_GGUF:-$CACHE/gguf}
PRESETS="Q8_0 Q6_K Q5_K_M Q5_K_S Q4_K_M Q4_K_S Q4_0 Q4_1 Q5_0 Q5_1 Q3_K_S Q3_K_M Q3_K_L Q2_K IQ4_NL IQ4_XS"
BF16_PRESETS="Q8_0 Q6_K Q4_K_M Q4_0"
IMATRIX_PRESETS="Q4_K_M IQ4_XS Q4_0 Q2_K"
MINILM_PRESETS="Q4_K_M Q8_0 Q4_0 IQ4_XS"
PROMPT="The clockmaker opened the shutters and wound the tall clock by the door."

t0=$SECONDS
PY=$(bash "$here/gguf_venv.sh")
echo "gguf_prepare: venv ready ($((SECONDS - t0)) s)" >&2
t1=$SECONDS
"$PY" "$here/make_gguf_models.py" "$OUT"
echo "gguf_prepare: models ready ($((SECONDS - t1)) s)" >&2

REF="$here/gguf_reference.py"
cd "$OUT"   # relative paths: the imatrix file name recorded in the outputs is the bare name
mkdir -p ref
t2=$SECONDS
# quant SRC PRESET SUFFIX [quantize options...] -> ref/<SRC without .gguf>.<PRESET><SUFFIX>.gguf
quant() {
    local src=$1 preset=$2 suffix=$3
    shift 3
    local dst="ref/${src%.gguf}.$preset$suffix.gguf"
    local types="${dst%.gguf}.types.json"
    local stale=0 a prev=""
    [ -f "$dst" ] && [ "$dst" -nt "$src" ] || stale=1
    for a in "$@"; do   # an output made with an imatrix is also stale when the imatrix is newer
        if [ "$prev" = --imatrix ] && [ ! "$dst" -nt "$a" ]; then stale=1; fi
        prev=$a
    done
    if [ "$stale" = 1 ]; then
        if ! "$PY" "$REF" quantize "$src" "$dst" --ftype "$preset" "$@" > "$dst.log" 2>&1; then
            tail -20 "$dst.log" >&2
            echo "gguf_prepare: quantize failed: $src $preset $*" >&2
            exit 1
        fi
        echo "$OUT/$dst"
    fi
    if [ ! -f "$types" ] || [ ! "$types" -nt "$dst" ]; then
        "$PY" "$REF" types "$dst" > "$types.partial"
        mv "$types.partial" "$types"
        echo "$OUT/$types"
    fi
}
for p in $PRESETS; do
    quant tiny-llama-f16.gguf "$p" ""
    quant tiny-llama-f32.gguf "$p" ""
done
for p in $BF16_PRESETS; do
    quant tiny-llama-bf16.gguf "$p" ""
done
for p in $IMATRIX_PRESETS; do
    quant tiny-llama-f16.gguf "$p" .imatrix --imatrix tiny-llama.imatrix.gguf
done
quant tiny-llama-f16.gguf Q4_K_M .imatrix-dat --imatrix tiny-llama.imatrix.dat
for p in $MINILM_PRESETS; do
    quant minilm-f16.gguf "$p" ""
done
echo "gguf_prepare: reference outputs ready ($((SECONDS - t2)) s)" >&2

t3=$SECONDS
"$PY" "$REF" run --prompt "$PROMPT" tiny-llama-f32.gguf tiny-llama-f16.gguf tiny-llama-bf16.gguf ref/tiny-llama-*.gguf
"$PY" "$REF" run --embedding --prompt "$PROMPT" minilm-f32.gguf minilm-f16.gguf ref/minilm-*.gguf
echo "gguf_prepare: sanity runs done ($((SECONDS - t3)) s); total $((SECONDS - t0)) s" >&2
