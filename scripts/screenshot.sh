#!/usr/bin/env bash
# Starts the app under Xvfb and writes PNGs of the main views into assets/ (or $1).
# Needs: xvfb xdotool imagemagick (apt-get install -y xvfb xdotool imagemagick).
# Usage: scripts/screenshot.sh [OUT_DIR] [MODEL]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/assets}"
model="${2:-}"
bin="${QUANTSCOPE_BIN:-$root/target/release/quantscope}"
[ -x "$bin" ] || bin="$root/target/debug/quantscope"
mkdir -p "$out"
export QUANTSCOPE_BIN="$bin" OUT="$out" MODEL="$model"
# A fresh settings dir so earlier runs' choices do not leak into the pictures.
export XDG_DATA_HOME="$(mktemp -d)" XDG_CONFIG_HOME="$(mktemp -d)"
xvfb-run -a -s '-screen 0 1600x1000x24' bash -c '
  set -e
  "$QUANTSCOPE_BIN" $MODEL & pid=$!
  sleep 8
  wid=$(xdotool search --name quantscope | head -1)
  xdotool windowmove "$wid" 0 0; xdotool windowsize "$wid" 1600 1000; sleep 2
  import -window root "$OUT/main.png"
  # The outlier layer, per-tensor, with every calibration method and the grid shown.
  xdotool mousemove 60 435 click 1; sleep 2
  import -window root "$OUT/outlier-per-channel.png"
  kill $pid
'
echo "wrote $out/*.png"
