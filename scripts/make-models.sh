#!/usr/bin/env bash
# Builds the shipped default checkpoints from nothing: the generated corpora, a compact
# codec-augmented ensemble, a masked lossy detector, and their evaluation summary.
# `make models` runs this; the sizes below are the ones the shipped files were made with.
# Usage: scripts/make-models.sh [all|ensemble|detector]
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), WORK (where corpora go).
set -euo pipefail
what=${1:-all}
source "$(dirname "$0")/common.sh"
clips=${CLIPS_PER_CLASS:-100}
epochs=${EPOCHS:-60}
epoch_size=${EPOCH_SIZE:-1400}
tracks=${TRACKS:-200}
det_epochs=${DETECTOR_EPOCHS:-8}
det_steps=${DETECTOR_STEPS:-100}

if [ "$what" = all ] || [ "$what" = ensemble ]; then
$train synth --out "$work/scenes" --clips-per-class "$clips" --seed 0
$train fit-ensemble --data "$work/scenes" --preset compact \
  --augment-codecs "mp3:64k,aac:32k,he-aac:16k,he-aac:32k" --epochs "$epochs" \
  --epoch-size "$epoch_size" --crop-frames 200 --band-limit 0.5 \
  --device "$device" --cache-dir "$cache" --no-resume --out models/ensemble.safetensors
$train evaluate --checkpoint models/ensemble.safetensors --data "$work/scenes" \
  --codecs "none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k" \
  --chains "sbc:bitpool=53>aac:64k" --device "$device" --cache-dir "$cache" --out models/evaluation
$train describe models/ensemble.safetensors > models/ensemble.txt
fi
if [ "$what" = all ] || [ "$what" = detector ]; then
$train synth-lossless --out "$work/lossless" --tracks "$tracks" --seed 0
$train fit-detector --data "$work/lossless" --mask-prob 1.0 --epochs "$det_epochs" \
  --steps-per-epoch "$det_steps" --batch-size 32 \
  --codecs "mp3:128k,mp3:256k,mp3:320k,fdk-aac:128k,fdk-aac:256k,fdk-aac:320k,vorbis:128k,vorbis:256k,vorbis:320k" \
  --device "$device" --cache-dir "$cache" --out models/detector.safetensors
$train describe models/detector.safetensors > models/detector.txt
fi
