#!/usr/bin/env bash
# GGUF checks against llama.cpp itself (the reference side is tests/python/gguf_prepare.sh,
# cached under ~/.cache/quantscope-ci/gguf):
#   1. quantscope quantize MODEL.gguf with each llama-quantize preset (from F16, F32 and BF16
#      sources, with and without an importance matrix in both formats, MiniLM's fallback rows)
#      gives tensors byte-identical to llama_model_quantize's, and the same metadata;
#   2. llama.cpp loads quantscope's file and its logits equal those of llama-quantize's file;
#   3. diff pairs the Hugging Face original with a GGUF (names, rope rows): every layer pairs and
#      the published R' measures exactly as quantscope's own q8_0 on the original;
#   4. ggml's quantizers (codes and scales, with and without an imatrix) and llama-quantize's
#      per-tensor type choice, each against the real library.
# Usage: tests/python/gguf.sh QUANTSCOPE_BIN. Prints "ok:" lines; exits 1 on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
EXAMPLES="$(dirname "$BIN")/examples"
OUT=${QS_GGUF:-${QUANTSCOPE_CI_CACHE:-$HOME/.cache/quantscope-ci}/gguf}
bash "$here/gguf_prepare.sh" >/dev/null
PY=$(bash "$here/gguf_venv.sh")
REF="$here/gguf_reference.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$OUT"   # the imatrix file name recorded in both outputs is the bare name

# same SRC PRESET SUFFIX [quantize options...]: quantscope's file against ref/<SRC>.<PRESET><SUFFIX>.gguf
same() {
    local src=$1 preset=$2 suffix=$3
    shift 3
    local ref="ref/${src%.gguf}.$preset$suffix.gguf" mine="$work/${src%.gguf}.$preset$suffix.gguf"
    "$BIN" quantize "$src" "$mine" --preset "$preset" "$@" -q >/dev/null
    local log="$work/compare.log"
    if ! "$PY" "$REF" compare "$ref" "$mine" > "$log"; then
        grep -v '^ok:' "$log" | head -5
        echo "FAIL: $src $preset$suffix"
        exit 1
    fi
    grep -q "keys identical" "$log" && ! grep -q "^DIFF: metadata" "$log" \
        || { grep -i metadata "$log"; echo "FAIL: metadata of $src $preset$suffix"; exit 1; }
    echo "ok: $src $preset$suffix: $(tail -1 "$log")"
}
for p in Q8_0 Q6_K Q5_K_M Q5_K_S Q4_K_M Q4_K_S Q4_0 Q4_1 Q5_0 Q5_1 Q3_K_S Q3_K_M Q3_K_L Q2_K IQ4_NL IQ4_XS; do
    same tiny-llama-f16.gguf "$p" ""
    same tiny-llama-f32.gguf "$p" ""
done
for p in Q8_0 Q6_K Q4_K_M Q4_0; do same tiny-llama-bf16.gguf "$p" ""; done
for p in Q4_K_M IQ4_XS Q4_0 Q2_K; do same tiny-llama-f16.gguf "$p" .imatrix --imatrix tiny-llama.imatrix.gguf; done
same tiny-llama-f16.gguf Q4_K_M .imatrix-dat --imatrix tiny-llama.imatrix.dat
for p in Q4_K_M Q8_0 Q4_0 IQ4_XS; do same minilm-f16.gguf "$p" ""; done

# 2. llama.cpp runs quantscope's files: logits equal to llama-quantize's.
for p in Q4_K_M Q6_K IQ4_XS; do
    "$BIN" quantize tiny-llama-f16.gguf "$work/run.$p.gguf" --preset "$p" -q >/dev/null
    "$PY" "$REF" logits "ref/tiny-llama-f16.$p.gguf" "$work/run.$p.gguf" \
        --prompt "The clockmaker wound the tall clock." > "$work/logits.log" \
        || { cat "$work/logits.log"; echo "FAIL: logits $p"; exit 1; }
    echo "ok: logits $p: $(tail -1 "$work/logits.log")"
done

# 3. diff: a Hugging Face original against a GGUF, names and rope rows undone.
"$BIN" diff tiny-llama-hf ref/tiny-llama-f32.Q8_0.gguf --output json > "$work/diff.json"
"$PY" - "$work/diff.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = d["tensors"]
assert len(t) == 30 and not [u for u in d["unpaired"] if "not in" in u["reason"]], d["unpaired"]
for x in t:
    own = x["schemes"]["q8_0"]
    assert own["mse"] == x["metrics"]["mse"] and own["max_abs_err"] == x["metrics"]["max_abs_err"], x["name"]
print(f"ok: diff tiny-llama-hf against its Q8_0 GGUF: {len(t)} layers paired, published = quantscope q8_0 in every one")
PYEOF

# 4. The quantizers and the type choice against the real library.
"$PY" "$root/tests/python/gguf_quant_reference.py" --check --example "$EXAMPLES/gguf_quantize"
"$PY" "$root/tests/python/gguf_preset_reference.py" --check --example "$EXAMPLES/gguf_preset"
