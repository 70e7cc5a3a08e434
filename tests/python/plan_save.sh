#!/usr/bin/env bash
# Issue 15: a mixed-precision save made from a plan loads in transformers and runs.
# `BIN plan` picks INT4/INT8 per layer of MiniLM under a 5.5 bits-per-weight budget
# and writes a recipe; `BIN quantize --recipe` saves it (several config groups);
# the plan must really mix schemes; load_and_run.py loads the save with transformers
# (compressed-tensors decompresses it) and compares embeddings with the original
# (mean cosine >= 0.95). Usage: plan_save.sh BIN [MODEL]; the shared venv's python
# comes from venv.sh. Exit 1 on any failure.
set -euo pipefail
BIN=$1
MODEL=${2:-sample-models/minilm}
T=$(dirname "$0")
PY=$(bash "$T/venv.sh")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" plan "$MODEL" --bits-per-weight 5.5 --output json > "$WORK/plan.json"
"$BIN" plan "$MODEL" --bits-per-weight 5.5 --output recipe > "$WORK/recipe.json"
"$PY" - "$WORK/plan.json" <<'PYEOF'
import json, sys
plan = json.load(open(sys.argv[1]))
used = sorted({l["scheme"] for l in plan["layers"]})
print(f"plan: {plan['bits_per_weight']:.3f} bits per weight, schemes {used}")
if len(used) < 2 or not any(s.startswith("int4") for s in used) or not any(s.startswith("int8") for s in used):
    print(f"FAIL: the plan does not mix INT4 and INT8: {used}")
    sys.exit(1)
PYEOF
"$BIN" quantize "$MODEL" "$WORK/saved" --recipe "$WORK/recipe.json" > /dev/null
"$PY" "$T/load_and_run.py" "$MODEL" "$WORK/saved" --threshold 0.95
echo "ok: a mixed-precision save from a plan loads in transformers and runs"
