#!/usr/bin/env bash
# How much of the band-limit augmentation to use: the compact FCNN (fine classes only) trained
# with the shipped ensemble's codec copies and --band-limit P for several P, each evaluated
# uncoded and on the two hardest paths. Writes reports/band-limit-sweep/pP/ per share.
# Usage: scripts/band-limit-sweep.sh [P ...]   (default: 0 0.25 0.5 0.75 1, the committed sweep)
# Environment: PYTHON, DEVICE (auto), WORK (data), EPOCHS (20), EPOCH_SIZE (1400), CACHE.
set -euo pipefail
source "$(dirname "$0")/common.sh"
epochs=${EPOCHS:-20}
epoch_size=${EPOCH_SIZE:-1400}
shares=("$@")
[ ${#shares[@]} -gt 0 ] || shares=(0 0.25 0.5 0.75 1)
need_corpus scenes
for p in "${shares[@]}"; do
  out=reports/band-limit-sweep/p$p
  $train fit-ensemble --data "$work/scenes" --preset compact --architectures fcnn --fine-only \
    --augment-codecs "mp3:64k,aac:32k,he-aac:16k,he-aac:32k" --epochs "$epochs" \
    --epoch-size "$epoch_size" --crop-frames 200 --band-limit "$p" --seed 0 \
    --device "$device" --cache-dir "$cache" --no-resume --out ".cache/band-limit-sweep/p$p.safetensors"
  $train evaluate --checkpoint ".cache/band-limit-sweep/p$p.safetensors" --data "$work/scenes" \
    --codecs "none,mp3:32k,sbc:64k,aac:32k" --quality-clips 0 --device "$device" \
    --cache-dir "$cache" --out "$out"
done
# The summary table, read back from every share's results.json.
$py - <<'PY'
import json
from pathlib import Path

root = Path("reports/band-limit-sweep")
runs = sorted(root.glob("p*/results.json"), key=lambda p: float(p.parent.name[1:]))
paths = [p["path"] for p in json.loads(runs[0].read_text())["paths"]]
lines = [
    "# Band-limit share sweep",
    "",
    "The compact FCNN (fine classes only) trained with the shipped ensemble's codec copies",
    "(`mp3:64k`, `aac:32k`, `he-aac:16k`, `he-aac:32k`) and `--band-limit P`, one seed each, each",
    "evaluated on the 300 test clips of `data/scenes` (one clip is 0.33 points). Made by",
    "`scripts/band-limit-sweep.sh`; each `pP/` folder is that share's evaluation report.",
    "",
    "| P | " + " | ".join(f"`{p}`" for p in paths) + " | lowest share kept |",
    "|---:|" + "---:|" * (len(paths) + 1),
]
for run in runs:
    acc = {p["path"]: p["accuracy"] for p in json.loads(run.read_text())["paths"]}
    kept = min(acc[p] / acc["none"] for p in paths if p != "none")
    cells = " | ".join(f"{acc[p]:.3f}" for p in paths)
    lines.append(f"| {run.parent.name[1:]} | {cells} | {100 * kept:.1f} % |")
(root / "README.md").write_text("\n".join(lines) + "\n")
print((root / "README.md").read_text())
PY
