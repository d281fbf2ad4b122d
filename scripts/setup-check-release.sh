#!/usr/bin/env bash
# Whether `make setup`'s Debian step (scripts/setup-system.sh) and the images' library step
# (deploy/docker/install-codec-libs.sh) find every package they need on another Debian release:
# a minimal root of that release from Debian's archive (debootstrap, a few minutes), then both
# scripts in it with `apt-get install` simulated (-s: every dependency resolved, nothing
# unpacked). Prints each script's verdict and the packages it chose where names differ.
# Usage (root, needs debootstrap): scripts/setup-check-release.sh [CODENAME]  (default trixie)
set -euo pipefail
release=${1:-trixie}
root=${ROOT_DIR:-/tmp/asc-setup-check-$release}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
if [ ! -x "$root/bin/bash" ]; then
  debootstrap --variant=minbase "$release" "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
    { echo "debootstrap $release failed ($root.log)" >&2; exit 1; }
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Both scripts copied into the root as the repository lays them out (setup-system.sh hands its
# installs to install-codec-libs.sh), the one `apt-get install` turned into a simulation.
mkdir -p "$root/root/repo/scripts" "$root/root/repo/deploy/docker"
cp "$repo/scripts/setup-system.sh" "$root/root/repo/scripts/"
sed 's/apt-get install -y -qq/apt-get install -s -qq/' "$repo/deploy/docker/install-codec-libs.sh" \
  >"$root/root/repo/deploy/docker/install-codec-libs.sh"
status=0
for script in scripts/setup-system.sh deploy/docker/install-codec-libs.sh; do
  rm -f "$root/etc/apt/sources.list.d/asc-stream-non-free.list"
  if out=$(chroot "$root" bash "/root/repo/$script" 2>&1); then
    chosen=$(grep -o '^Inst \(libflac[^ ]*\|libfdk-aac[^ ]*\|python3-venv\)' <<<"$out" |
      cut -d' ' -f2 | xargs || true)
    echo "$release: $script: every package found (${chosen:-nothing renamed} among them)"
  else
    echo "$release: $script: FAILED"; echo "$out" | grep -v '^\(Inst\|Conf\) ' | tail -5
    status=1
  fi
done
exit $status
