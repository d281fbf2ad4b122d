#!/usr/bin/env bash
# Reruns both papers' experiments into reports/ at the scale of the committed reports.
# `make reports` runs this; each report's README repeats the exact command it came from.
# Usage: scripts/make-reports.sh [all|codec-augmentation|lossy-detection|detector-families|
#   generator-calibration]
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), WORK (where the corpora are;
# scripts/make-models.sh generates them), and the sizes below. On a GPU, raise them: the
# defaults of `asc-train experiment ...` are the full schedule (30 epochs of every training
# example; 20 epochs of 100 detector steps). `detector-families` (not part of `all`) scores the
# shipped models/detector.safetensors on the held-out tracks of the corpus and of Kitchen20
# (KITCHEN20, default ../shared/data/kitchen20).
set -euo pipefail
what=${1:-all}
source "$(dirname "$0")/common.sh"
epochs=${EPOCHS:-20}
epoch_size=${EPOCH_SIZE:-1400}
det_epochs=${DETECTOR_EPOCHS:-8}
det_steps=${DETECTOR_STEPS:-100}
if [ "$what" = detector-families ]; then need_corpus lossless; else need_corpus scenes lossless; fi
if [ "$what" = all ] || [ "$what" = codec-augmentation ]; then
$train experiment codec-augmentation --data "$work/scenes" --out reports/codec-augmentation \
  --epochs "$epochs" --epoch-size "$epoch_size" --quality-clips 0 --device "$device" \
  --cache-dir "$cache" --checkpoints .cache/experiments/codec-augmentation-${epochs}x${epoch_size}
fi
if [ "$what" = all ] || [ "$what" = lossy-detection ]; then
$train experiment lossy-detection --data "$work/lossless" --out reports/lossy-detection \
  --epochs "$det_epochs" --steps-per-epoch "$det_steps" --device "$device"
fi
if [ "$what" = all ] || [ "$what" = generator-calibration ]; then
if [ -f "$kitchen20/meta.csv" ]; then  # the generated corpus measured beside real recordings
$train corpus-stats --data "$kitchen20" --data "$work/scenes" --out reports/generator-calibration \
  --codecs sbc:64k,mp3:32k,aac:32k,opus:64k
else
echo "skipping generator-calibration: no Kitchen20 at $kitchen20 (set KITCHEN20)" >&2
fi
fi
if [ "$what" = detector-families ]; then  # needs Kitchen20 too: asked for by name only
need_kitchen20
$train experiment detector-families --checkpoint models/detector.safetensors \
  --data "$work/lossless" "$kitchen20" --seed 0 --out reports/detector-families \
  --device "$device" --cache-dir "$cache"
fi
