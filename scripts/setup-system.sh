#!/usr/bin/env bash
# Installs the Debian libraries the codec engine loads at run time.
# Idempotent: does nothing when every package is already present.
set -euo pipefail

# prometheus: its promtool checks deploy/prometheus/prometheus.yml in the tests.
# ffmpeg: the command-line coder benchmarks/coding_pipeline.py compares the engine with.
# openssl: `make certs` (scripts/make-certs.sh) makes the development CA and certificates.
packages=(libopus0 libopusfile0 libvorbis0a libvorbisenc2 libvorbisfile3 libogg0 libflac12 libfdk-aac2
          prometheus ffmpeg openssl)
# mosquitto: the MQTT broker tests/test_edge_network.py runs on loopback for asc-edge --mqtt.
# GStreamer's RTSP server (through python3-gi) with the base, good and libav plugins: the real
# RTSP source (AAC audio and a video track the edge must not request) those tests serve.
packages+=(mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-libav)
# gcc, libc6-dev: libsvm-official (under visqol-python, the reports' quality score) has no wheel.
packages+=(gcc libc6-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: missing Debian packages (${missing[*]}); run 'make setup' as root or install them" >&2
  exit 1
fi

# libfdk-aac2 lives in Debian's non-free component, which a stock image does not enable.
nonfree=/etc/apt/sources.list.d/asc-stream-non-free.list
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-cache policy libfdk-aac2 | grep -q "Candidate: [0-9]"; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  echo "deb http://deb.debian.org/debian ${codename} non-free" > "$nonfree"
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
