#!/usr/bin/env bash
# Starts the app under Xvfb at three window sizes and writes PNGs of the main views
# into assets/ (or $1). Each view is reached with QUANTSCOPE_SCRIPT (see
# app/src/gui/script.rs), not with clicks at fixed coordinates, so the pictures
# survive layout changes.
# Needs: apt-get install -y xvfb xdotool imagemagick
# Usage: scripts/screenshot.sh [OUT_DIR]     (build first: cargo build --release)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/assets}"
bin="${QUANTSCOPE_BIN:-$root/target/release/quantscope}"
[ -x "$bin" ] || bin="$root/target/debug/quantscope"
mkdir -p "$out"
minilm=""
[ -f "$root/sample-models/minilm/model.safetensors" ] && minilm="$root/sample-models/minilm"

# shot NAME WxH WAIT_SECONDS SCRIPT [MODEL]
shot() {
  local name=$1 size=$2 wait=$3 script=$4 model=${5:-}
  local w=${size%x*} h=${size#*x}
  # Fresh settings so earlier runs' choices do not leak into the pictures.
  XDG_DATA_HOME="$(mktemp -d)" XDG_CONFIG_HOME="$(mktemp -d)" QUANTSCOPE_SCRIPT="$script" \
  xvfb-run -a -s "-screen 0 ${w}x${h}x24" bash -c '
    "$0" $1 2>/dev/null & pid=$!
    for _ in $(seq 40); do wid=$(xdotool search --name quantscope 2>/dev/null | head -1) && [ -n "$wid" ] && break; sleep 0.25; done
    xdotool windowmove "$wid" 0 0; xdotool windowsize "$wid" "$2" "$3"
    xdotool mousemove 5 $(($3 - 5))   # the pointer rests on the status bar: no tooltip in the picture
    sleep "$4"
    import -window root "$5"
    kill $pid
  ' "$bin" "$model" "$w" "$h" "$wait" "$out/$name-$size.png"
  echo "wrote $out/$name-$size.png"
}

for size in 1000x700 1600x1000 2560x1440; do
  shot layer "$size" 6 "select outlier_channels.weight; scheme int8:tensor:minmax; all-calibrations"
  shot per-channel "$size" 6 "select outlier_channels.weight; scheme int8:channel:minmax"
  shot fp8-teaching "$size" 6 "select outlier_channels.weight; scheme e4m3:tensor:minmax:asym; pick 0.9"
  shot sensitivity "$size" 10 "view sensitivity; matrix"
  shot save-window "$size" 6 "save-window"
done
if [ -n "$minilm" ]; then
  shot minilm 1600x1000 10 "select encoder.layer.0.attention.self.query.weight" "$minilm"
  shot sensitivity-minilm 1600x1000 25 "view sensitivity; matrix" "$minilm"
  for size in 1000x700 1600x1000; do
    shot nvfp4-teaching "$size" 10 "select encoder.layer.0.attention.self.query.weight; scheme nvfp4; grid; pick 0.05" "$minilm"
    shot mxfp4-teaching "$size" 10 "select encoder.layer.0.attention.self.query.weight; scheme mxfp4; grid; pick 0.05" "$minilm"
  done
  plan="int3:group128:mse,int4:channel:mse,int4:group128:minmax,int4:group128:mse,int4:group64:mse,int5:group128:mse,int6:group128:mse,int8:channel:minmax"
  for size in 1000x700 1600x1000; do
    shot plan-minilm "$size" 40 "view plan; schemes $plan" "$minilm"
    shot kl-clip-minilm "$size" 10 "select encoder.layer.3.output.dense.weight; scheme int8:tensor:entropy" "$minilm"
  done
  # Compare mode: MiniLM beside its own int4 save.
  saved="$(mktemp -d)/minilm-int4"
  "$bin" quantize "$minilm" "$saved" --scheme int4:group64:minmax:asym -q >/dev/null
  for size in 1000x700 1600x1000; do
    shot compare-layer "$size" 15 "compare $saved; select encoder.layer.0.attention.self.query.weight; published" "$minilm"
    shot compare-sensitivity "$size" 30 "compare $saved; view sensitivity; matrix" "$minilm"
    shot compare-plan "$size" 40 "compare $saved; view plan" "$minilm"
  done
fi
