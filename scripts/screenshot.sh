#!/usr/bin/env bash
# Starts the app under Xvfb and writes PNGs of the main views into assets/ (or $1).
# Needs: apt-get install -y xvfb xdotool imagemagick
# Usage: scripts/screenshot.sh [OUT_DIR]     (build first: cargo build --release)
# Clicks are at fixed coordinates of the 1600x1000 layout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/assets}"
bin="${QUANTSCOPE_BIN:-$root/target/release/quantscope}"
[ -x "$bin" ] || bin="$root/target/debug/quantscope"
mkdir -p "$out"
minilm=""
[ -f "$root/sample-models/minilm/model.safetensors" ] && minilm="$root/sample-models/minilm"
export QUANTSCOPE_BIN="$bin" OUT="$out" MINILM="$minilm"
# Fresh settings so earlier runs' choices do not leak into the pictures.
export XDG_DATA_HOME="$(mktemp -d)" XDG_CONFIG_HOME="$(mktemp -d)"
xvfb-run -a -s '-screen 0 1600x1000x24' bash -c '
  set -e
  start() {
    "$QUANTSCOPE_BIN" "$@" 2>/dev/null & pid=$!
    sleep 8
    wid=$(xdotool search --name quantscope | head -1)
    xdotool windowmove "$wid" 0 0; xdotool windowsize "$wid" 1600 1000; sleep 2
  }
  shot() { sleep "${2:-2}"; import -window root "$OUT/$1.png"; }
  click() { xdotool mousemove "$1" "$2" click 1; sleep 0.5; }

  start
  shot main
  click 104 414         # outlier_channels.weight
  click 1287 130        # per-tensor
  click 655 67          # all calibration methods
  shot outlier-per-tensor 3
  click 1374 130        # per-channel
  shot outlier-per-channel
  click 1329 84         # format combo
  click 1329 164        # FP8 E4M3
  click 700 300         # pick a value for the worked example
  shot fp8-teaching
  kill $pid
  if [ -n "$MINILM" ]; then
    start "$MINILM"
    click 331 60          # sort by SQNR
    shot minilm 6
    kill $pid
  fi
'
echo "wrote $(ls "$out"/*.png | wc -l) PNGs to $out"
