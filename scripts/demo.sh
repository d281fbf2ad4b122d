#!/usr/bin/env bash
# The demo on the bundled defaults: generate a short full-band test clip, then send it through
# the codec paths of the papers and print what each did to it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-output
mkdir -p "$out"
.venv/bin/python -m asc.signals "$out/clip.wav"
for spec in pcm16 flac opus:32k mp3:64k mp3:32k aac:64k he-aac:32k sbc:64k vorbis:128k \
            "mp3:128k,cutoff=14k" aptx "sbc:bitpool=53>aac:64k"; do
  name=$(echo "$spec" | tr ':>,=' '_-__')
  .venv/bin/asc-codec roundtrip "$out/clip.wav" "$spec" -o "$out/$name.wav" | grep -E "path|achieved|SNR|bandwidth"
  echo
done
