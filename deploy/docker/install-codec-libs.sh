#!/bin/sh
# Installs the libraries the codec engine loads at run time, in an image or on a device, plus
# any package named as an argument (scripts/setup-system.sh passes a development machine's). Works on Debian (libfdk-aac2 is in its non-free component, enabled here when the
# image lacks it) and on Ubuntu (the PyTorch images; libfdk-aac2 is in multiverse, which
# Ubuntu's images enable). FLAC needs no library of its own: PyAV's FFmpeg handles it.
# A|B (here or as an argument) names one library by each release's package name, first found
# first: Debian 13 and Ubuntu 24.04 renamed libfdk-aac2 to libfdk-aac2t64 (the same
# libfdk-aac.so.2). The images delete apt's lists after it; a device keeps them.
set -eu

fdk="libfdk-aac2|libfdk-aac2t64"
wanted="libopus0 libopusfile0 libvorbis0a libvorbisenc2 libvorbisfile3 libogg0 $fdk $*"

# The first of A|B with an install candidate in the archive, or nothing.
pick() {
  for name in $(echo "$1" | tr '|' ' '); do
    if apt-cache policy "$name" 2>/dev/null | grep -q "Candidate: [0-9]"; then
      echo "$name"
      return
    fi
  done
}

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ -z "$(pick "$fdk")" ]; then
  . /etc/os-release
  if [ "${ID:-}" != debian ]; then
    echo "install-codec-libs: libfdk-aac2 has no install candidate on ${ID:-this system};" \
      "enable the component that carries it (multiverse on Ubuntu)" >&2
    exit 1
  fi
  echo "deb http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} non-free" \
    > /etc/apt/sources.list.d/asc-stream-non-free.list
  apt-get update -qq
fi
packages=""
for spec in $wanted; do
  name=$(pick "$spec")
  if [ -z "$name" ]; then
    echo "install-codec-libs: no package of $spec in this system's archive" >&2
    exit 1
  fi
  packages="$packages $name"
done
# shellcheck disable=SC2086  # the list is meant to split into words
apt-get install -y -qq --no-install-recommends $packages
