#!/usr/bin/env bash
# Installs the Debian libraries the codec engine loads at run time.
# Idempotent: does nothing when every package is already present.
set -euo pipefail

# prometheus: its promtool checks deploy/prometheus/prometheus.yml in the tests.
# ffmpeg: the command-line coder benchmarks/coding_pipeline.py compares the engine with.
# openssl: `make certs` (scripts/make-certs.sh) makes the development CA and certificates.
# A|B: whichever the release has, first found first: libFLAC's library package is libflac12 on
# Debian 12, libflac14 on Debian 13 and libflac12t64 on Ubuntu 24.04 (pyogg finds any), and
# Debian 13 and Ubuntu 24.04 ship libfdk-aac.so.2 as libfdk-aac2t64.
packages=(libopus0 libopusfile0 libvorbis0a libvorbisenc2 libvorbisfile3 libogg0
          "libflac12|libflac14|libflac12t64" "libfdk-aac2|libfdk-aac2t64" prometheus ffmpeg openssl)
# mosquitto: the MQTT broker tests/test_edge_network.py runs on loopback for asc-edge --mqtt.
# GStreamer's RTSP server (through python3-gi) with the base, good and libav plugins: the real
# RTSP source (AAC audio and a video track the edge must not request) those tests serve.
packages+=(mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-libav)
# gcc, libc6-dev: libsvm-official (under visqol-python, the reports' quality score) has no wheel.
packages+=(gcc libc6-dev)
# python3-venv: `make setup` makes .venv with `python3 -m venv`, which on Debian's own python3
# needs ensurepip from this package; a Python built elsewhere (pyenv, the python images) has it.
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)

# The whole output matched, not piped into `grep -q`: under pipefail, grep leaving early can
# kill the writer with SIGPIPE and fail the test for a package that is there.
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for spec in "${packages[@]}"; do
  IFS='|' read -ra names <<<"$spec"
  found=no
  for p in "${names[@]}"; do installed "$p" && found=yes && break; done
  [ "$found" = yes ] || missing+=("$spec")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: missing Debian packages (${missing[*]}); run 'make setup' as root or install them" >&2
  exit 1
fi
# The one installer of the codec libraries (the images use it too): it enables Debian's
# non-free component for libfdk-aac2 where absent and picks each A|B by the release's archive.
exec sh "$(dirname "$0")/../deploy/docker/install-codec-libs.sh" "${missing[@]}"
