#!/usr/bin/env bash
# Builds the shipped default checkpoints from nothing: the generated corpora, a compact
# codec-augmented ensemble, a masked lossy detector, and their evaluation summary. The detector
# trains on the generated lossless corpus and Kitchen20's lossless originals (KITCHEN20), each
# track coded through DETECTOR_COPIES settings of every codec family (`--codecs device`); its
# training takes about 80 minutes on a 2-core CPU, and an interrupted one resumes when rerun.
# `make models` runs this; the sizes below are the ones the shipped files were made with.
# Usage: scripts/make-models.sh [all|ensemble|detector]
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), WORK (where corpora go),
# KITCHEN20 (default ../shared/data/kitchen20), MODELS (where checkpoints go, models), and the
# sizes below.
set -euo pipefail
what=${1:-all}
source "$(dirname "$0")/common.sh"
clips=${CLIPS_PER_CLASS:-100}
epochs=${EPOCHS:-60}
epoch_size=${EPOCH_SIZE:-1400}
tracks=${TRACKS:-200}
band_limit=${BAND_LIMIT:-0.5}  # share of training draws with a random lowpass in the features
det_epochs=${DETECTOR_EPOCHS:-8}
det_steps=${DETECTOR_STEPS:-200}
det_copies=${DETECTOR_COPIES:-4}
det_max=${DETECTOR_MAX_TRACKS:-}  # tracks from each folder; empty: all
models=${MODELS:-models}
mkdir -p "$models"

if [ "$what" = all ] || [ "$what" = ensemble ]; then
$train synth --out "$work/scenes" --clips-per-class "$clips" --seed 0
$train fit-ensemble --data "$work/scenes" --preset compact \
  --augment-codecs "mp3:64k,aac:32k,he-aac:16k,he-aac:32k" --epochs "$epochs" \
  --epoch-size "$epoch_size" --crop-frames 200 --band-limit "$band_limit" \
  --device "$device" --cache-dir "$cache" --no-resume --out "$models"/ensemble.safetensors
$train evaluate --checkpoint "$models"/ensemble.safetensors --data "$work/scenes" \
  --codecs "none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k" \
  --chains "sbc:bitpool=53>aac:64k" --device "$device" --cache-dir "$cache" --out "$models"/evaluation
$train describe "$models"/ensemble.safetensors > "$models"/ensemble.txt
fi
if [ "$what" = all ] || [ "$what" = detector ]; then
need_kitchen20
$train synth-lossless --out "$work/lossless" --tracks "$tracks" --seed 0
$train fit-detector --data "$work/lossless" "$kitchen20" --codecs device \
  --copies-per-track "$det_copies" --mask-prob 1.0 --epochs "$det_epochs" \
  --steps-per-epoch "$det_steps" --batch-size 32 --seed 0 ${det_max:+--max-tracks "$det_max"} \
  --device "$device" --cache-dir "$cache" --out "$models"/detector.safetensors
$train describe "$models"/detector.safetensors > "$models"/detector.txt
fi
