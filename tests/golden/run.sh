#!/usr/bin/env bash
# Behaviour pin: the CLI's outputs on MiniLM (report under 14 schemes covering every format and
# calibration, report --compare, plan JSON and recipe, diff against a save, and the saved files of
# 5 presets) must hash to tests/golden/SHA256SUMS, which the last release made. A deliberate change
# of numbers or files regenerates it: `tests/golden/run.sh BIN --update`, and says why in the commit.
# Usage: tests/golden/run.sh BIN [--update]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
MODEL=sample-models/minilm
OUT=target/golden
rm -rf "$OUT" && mkdir -p "$OUT/saves"
# Two threads, as on CI; results must not depend on it, but the pin should not hide that either.
export RAYON_NUM_THREADS=2
SCHEMES=(int8:channel:minmax int8:tensor:p99.9 int8:channel:mse int8:tensor:entropy
    int4:group64:hqq:asym int4:group128:mse:asym int3:channel:minmax:asym int2:group64:minmax
    e4m3:channel:minmax e5m2:tensor:mse e4m3:block128:minmax nvfp4 mxfp4 mxfp8)
for s in "${SCHEMES[@]}"; do
    "$BIN" report "$MODEL" --scheme "$s" --output json > "$OUT/report-${s//[:,]/_}.json"
done
"$BIN" report "$MODEL" --scheme int4:group128 --output csv > "$OUT/report-int4.csv"
"$BIN" report "$MODEL" --output json --compare int8:channel int4:group128:mse:asym nvfp4 e4m3:channel \
    > "$OUT/compare.json"
"$BIN" report "$MODEL" --output csv --compare int8:channel int4:group64:hqq:asym > "$OUT/compare.csv"
"$BIN" plan "$MODEL" --bits-per-weight 4.5 --output json > "$OUT/plan.json"
"$BIN" plan "$MODEL" --bits-per-weight 6 --objective worst --output recipe > "$OUT/plan-recipe.json"
declare -A PRESET=([w8a16]="int8:group128" [w4a16-asym]="int4:group128:minmax:asym"
    [fp8-dynamic]="e4m3:channel --activations fp8-dynamic" [nvfp4]="nvfp4" [mxfp4]="mxfp4")
for p in w8a16 w4a16-asym fp8-dynamic nvfp4 mxfp4; do
    # shellcheck disable=SC2086
    "$BIN" quantize "$MODEL" --scheme ${PRESET[$p]} "$OUT/saves/$p" > "$OUT/quantize-$p.json"
done
"$BIN" quantize "$MODEL" --recipe "$OUT/plan-recipe.json" "$OUT/saves/plan" > "$OUT/quantize-plan.json"
"$BIN" diff "$MODEL" "$OUT/saves/w4a16-asym" --output json > "$OUT/diff.json"
"$BIN" diff "$MODEL" "$OUT/saves/plan" --output json --compare int8:channel > "$OUT/diff-plan.json"
SUMS=$(realpath -m tests/golden/SHA256SUMS)
if [ "${2:-}" = "--update" ]; then
    (cd "$OUT" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$SUMS"
    echo "golden: wrote $(wc -l < "$SUMS") sums"
else
    (cd "$OUT" && sha256sum --quiet -c "$SUMS") && n=$(wc -l < "$SUMS") &&
        [ "$n" = "$(cd "$OUT" && find . -type f | wc -l)" ] && echo "golden: $n files identical"
fi
