#!/usr/bin/env bash
# The ASC paper's experiments on real recordings (Kitchen20), fold by fold, into
# reports/real-audio/. Each fold holds out a fifth of the recordings (never a clip of a
# recording seen in training) and trains with its own seed, so the folds' spread is the noise
# that a difference has to beat. A fold whose report exists is skipped: rerun to add folds.
# Usage: scripts/real-audio-reports.sh [FOLDS]   (default "1 2 3"; Kitchen20 has five)
# Environment: KITCHEN20 (default ../shared/data/kitchen20), PYTHON, DEVICE, CACHE, EPOCHS (30),
# EPOCH_SIZE (600), QUALITY_CLIPS (ViSQOL clips per path and fold, 10), CONDITIONS (Experiment
# B's training conditions, default all seven; the summary pools those every fold ran),
# REMEDY_FOLDS (folds the remedies ensemble-broad, -bandlimit, -consistency, -foreign and
# -jitter, -mildjitter, -opus, -opus16 are tried on, default: every fold run; "" skips them),
# REMEDIES (which of them, default all eight).
set -euo pipefail
source "$(dirname "$0")/common.sh"
folds=${1:-1 2 3}
data=${KITCHEN20:-../shared/data/kitchen20}
epochs=${EPOCHS:-30}
epoch_size=${EPOCH_SIZE:-600}
quality=${QUALITY_CLIPS:-10}
conditions=${CONDITIONS:-1,2,3,4,5,6,7}
out=reports/real-audio
models=.cache/experiments/real-audio
if [ ! -f "$data/meta.csv" ] && [ ! -f "$data/kitchen20.csv" ]; then
  echo "no Kitchen20 at $data (meta.csv or kitchen20.csv): set KITCHEN20" >&2
  exit 2
fi
# Experiment A's paths: the paper's Table 2, more bitrates, the unseen families, two hops.
paths=none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k,opus:16k,opus:24k,aac:128k
paths+=,vorbis:64k,he-aac:16k,sbc:bitpool=53,aptx
chains="sbc:bitpool=53>aac:64k,opus:24k>mp3:64k"
# The paper's recipe: its four training codecs, on top of the baseline augmentations.
recipe=mp3:64k,aac:32k,he-aac:16k,he-aac:32k
# Remedies for the recipe's worst paths: a low MP3 rate as well (SBC stays unseen), and that
# with a quarter of the examples band-limited at random in the features (SBC and Opus unseen).
broad=mp3:32k,$recipe
band_limit=0.25
# A third: ensemble-broad taught to answer each coded copy as it answers the original
# (a Jensen-Shannon consistency term, AugMix's remedy for corruptions never trained on).
consistency=10
# A fourth: ensemble-broad + copies through two codecs no device streams, MPEG-1 Layer II
# (sub-band quantisation noise over the full band, as SBC's) and AC-3 (an MDCT codec cutting at
# 12 kHz): domain generalisation to unseen codecs; the paths unseen before stay unseen.
foreign=$broad,mp2:64k,ac3:64k
# A fifth: ensemble-foreign + level noise in every band of half the examples' features (Opus at
# 16 kbit/s keeps the band but not its levels; every training codec cuts a band instead).
jitter=0.5
# A sixth: the same noise, milder (0.05 to 0.2 of a clip's spread rather than 0.1 to 0.4), in
# case the stronger noise taught the model too coarse a view.
mild_spread=0.05,0.2
# A seventh: ensemble-foreign + `opus:32k` copies, the rate a device streams by default: Opus
# is then a seen codec, and `opus:16k` and `opus:24k` seen codec at an unseen bitrate (as the
# paper's `mp3:32k`); SBC, Vorbis and aptX stay unseen.
with_opus=$foreign,opus:32k
# An eighth: ensemble-foreign + `opus:16k` copies, the path itself: how much of it a model that
# has seen that very path keeps, the most any training of this model can expect there.
with_opus16=$foreign,opus:16k
remedy_folds=${REMEDY_FOLDS-$folds}
remedies=${REMEDIES:-ensemble-broad ensemble-bandlimit ensemble-consistency ensemble-foreign
  ensemble-jitter ensemble-mildjitter ensemble-opus ensemble-opus16}

# Experiment A first (both ensembles, every fold): the goals rest on it; then Experiment B.
for fold in $folds; do
  models_here="ensemble ensemble-recipe"
  case " $remedy_folds " in *" $fold "*) models_here+=" $remedies" ;; esac
  for model in $models_here; do
    ckpt="$models/$model-fold$fold.safetensors"
    if [ ! -f "$out/$model/fold$fold/results.json" ]; then
      augment=()
      [ "$model" = ensemble-recipe ] && augment=(--augment-codecs "$recipe")
      [ "$model" = ensemble-broad ] && augment=(--augment-codecs "$broad")
      [ "$model" = ensemble-bandlimit ] &&
        augment=(--augment-codecs "$broad" --band-limit "$band_limit")
      [ "$model" = ensemble-consistency ] &&
        augment=(--augment-codecs "$broad" --consistency "$consistency")
      [ "$model" = ensemble-foreign ] && augment=(--augment-codecs "$foreign")
      [ "$model" = ensemble-jitter ] && augment=(--augment-codecs "$foreign" --jitter "$jitter")
      [ "$model" = ensemble-mildjitter ] &&
        augment=(--augment-codecs "$foreign" --jitter "$jitter" --jitter-spread "$mild_spread")
      [ "$model" = ensemble-opus ] && augment=(--augment-codecs "$with_opus")
      [ "$model" = ensemble-opus16 ] && augment=(--augment-codecs "$with_opus16")
      $train fit-ensemble --data "$data" --fold "$fold" --seed "$fold" --out "$ckpt" \
        --epochs "$epochs" --epoch-size "$epoch_size" "${augment[@]}" --device "$device" \
        --cache-dir "$cache"
      $train evaluate --checkpoint "$ckpt" --data "$data" --fold "$fold" --codecs "$paths" \
        --chains "$chains" --quality-clips "$quality" --device "$device" --cache-dir "$cache" \
        --out "$out/$model/fold$fold"
    fi
  done
done
# Experiment B: the seven training conditions of the 20-class FCNN.
for fold in $folds; do
  if [ ! -f "$out/codec-augmentation/fold$fold/results.json" ]; then
    $train experiment codec-augmentation --data "$data" --fold "$fold" --seed "$fold" \
      --out "$out/codec-augmentation/fold$fold" --epochs "$epochs" --epoch-size "$epoch_size" \
      --conditions "$conditions" --quality-clips 0 --device "$device" --cache-dir "$cache" \
      --checkpoints "$models/codec-augmentation-fold$fold"
  fi
done
$train summarize-folds "$out"
