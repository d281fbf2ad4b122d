#!/usr/bin/env bash
# `make images-check`: builds the server and edge images for real, from the locked requirements,
# and runs them together. The server (on CPU) and edge containers share a user-defined network;
# the check waits for the server's healthcheck, streams the labelled sample clips from the edge
# image through pcm16 and opus:32k, reads the server's /metrics from another container, checks
# the users and packages inside both images, then stops the server with SIGTERM and checks that
# it drained and exited 0. One PASS or FAIL line per check, the times, and the exit status.
#
# It sets itself up (as root): installs Debian's docker.io and debootstrap when missing, and
# starts a Docker daemon when none answers (stopped again at the end). Where Docker Hub is out
# of reach it builds a stand-in for python:3.11-slim-bookworm from Debian's own archive, cached
# as asc-stream/base:bookworm. Containers and the network are removed at the end; the stand-in
# base and the two images are kept (their layers make the next run fast).
#
# Environment:
#   BASE_IMAGE       base of both images (default: the stand-in; python:3.11-slim-bookworm on a
#                    host that reaches Docker Hub skips the stand-in)
#   FORCE=1          rebuild the stand-in base even when it is cached
#   KEEP_IMAGES=0    remove the two built images at the end
#   LOG_DIR          build logs, server log, the edge's JSON lines (default /tmp/asc-images-check)
#   DOCKERD_STORAGE_DRIVER   storage driver of a daemon started here (default vfs)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   archives for the stand-in (default: the host's apt's)
set -euo pipefail
cd "$(dirname "$0")/.."

STANDIN=asc-stream/base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$STANDIN}
SERVER_IMAGE=${SERVER_IMAGE:-asc-stream/server:images-check}
EDGE_IMAGE=${EDGE_IMAGE:-asc-stream/edge:images-check}
LOG_DIR=${LOG_DIR:-/tmp/asc-images-check}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}
CODECS=(pcm16 opus:32k)

# Names of this run's containers and network: unique, so a second run or other work on the same
# daemon is never touched by the cleanup.
RUN_ID=asc-check-$$
NET=$RUN_ID
SERVER=$RUN_ID-server
EDGE_LOOP=$RUN_ID-edge-loop

# The classic builder: newer docker CLIs build with BuildKit only through the buildx plugin,
# which Debian's docker.io lacks; the Dockerfiles use nothing BuildKit adds.
export DOCKER_BUILDKIT=0

T0=$SECONDS
RESULTS=()
FAILED=0
DOCKERD_PID=
APT_UPDATED=
TMP_ROOTFS=

mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR"/*.log "$LOG_DIR"/*.jsonl "$LOG_DIR"/*.txt

# ---------------------------------------------------------------------------------------------
# Reporting

elapsed() { # elapsed SECONDS -> "3m07s"
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

note() { echo "--    $*"; }

indent() { awk '{ print "      | " $0 }'; } # quoted output, every line ended

pass() {
  RESULTS+=("PASS  $*")
  echo "PASS  $*"
}

fail() {
  RESULTS+=("FAIL  $*")
  echo "FAIL  $*"
  FAILED=1
}

# die MESSAGE: a failure that leaves nothing later worth checking.
die() {
  fail "$*"
  exit 1
}

summary() {
  local line status=PASS
  [[ $FAILED == 0 ]] || status=FAIL
  {
    echo
    echo "== images-check summary ($(date -u +%Y-%m-%dT%H:%MZ), base $BASE_IMAGE)"
    for line in "${RESULTS[@]}"; do echo "$line"; done
    echo "images-check: $status, ${#RESULTS[@]} checks, total $(elapsed $((SECONDS - T0)))"
  } | tee "$LOG_DIR/summary.txt"
}

# ---------------------------------------------------------------------------------------------
# Cleanup: this run's containers and network always; the images only with KEEP_IMAGES=0; the
# daemon only when this run started it.

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # A command that failed outside the checks (set -e) still makes the run a failure.
  if [[ $rc == 130 ]]; then
    fail "interrupted"
  elif [[ $rc != 0 && $FAILED == 0 ]]; then
    fail "stopped by an unexpected error (exit status $rc)"
  fi
  if docker info >/dev/null 2>&1; then
    docker rm -f "$SERVER" "$EDGE_LOOP" >/dev/null 2>&1 || true
    docker network rm "$NET" >/dev/null 2>&1 || true
    if [[ ${KEEP_IMAGES:-1} == 0 ]]; then
      docker rmi "$SERVER_IMAGE" "$EDGE_IMAGE" >/dev/null 2>&1 || true
      note "removed $SERVER_IMAGE and $EDGE_IMAGE (KEEP_IMAGES=0); kept $BASE_IMAGE"
    elif docker image inspect "$SERVER_IMAGE" "$EDGE_IMAGE" >/dev/null 2>&1; then
      note "kept $SERVER_IMAGE, $EDGE_IMAGE (KEEP_IMAGES=0 removes them) and $BASE_IMAGE"
    fi
  fi
  [[ -z $TMP_ROOTFS ]] || rm -rf "$TMP_ROOTFS"
  if [[ -n $DOCKERD_PID ]]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    note "stopped the Docker daemon this run started (pid $DOCKERD_PID)"
  fi
  summary
  [[ $FAILED == 0 ]] || rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E # functions inherit the ERR trap: an unexpected failure names its line
trap 'echo "error: line $LINENO: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------------------------------------
# Tools and daemon

apt_install() { # apt_install PACKAGE...: Debian packages, one `apt-get update` per run
  [[ $(id -u) == 0 ]] || die "needs root to install $*"
  if [[ -z $APT_UPDATED ]]; then
    apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || die "apt-get update failed ($LOG_DIR/apt.log)"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >>"$LOG_DIR/apt.log" 2>&1 || die "apt-get install $* failed ($LOG_DIR/apt.log)"
}

start_docker() {
  local t=$SECONDS
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    apt_install docker.io
  fi
  command -v python3 >/dev/null || apt_install python3 # reads the edge's JSON lines
  if docker info >/dev/null 2>&1; then
    pass "Docker daemon: already running, $(docker version -f '{{.Server.Version}}')"
    return
  fi
  [[ $(id -u) == 0 ]] || die "no Docker daemon answers, and starting one needs root"
  # vfs: the storage driver that works without overlay mounts (sandboxed hosts); no iptables and
  # no default bridge: builds use the host's network, containers a user-defined network.
  # setsid: a Ctrl-C at the terminal reaches this script, not the daemon, so cleanup can run.
  setsid dockerd --storage-driver="${DOCKERD_STORAGE_DRIVER:-vfs}" --iptables=false \
    --bridge=none >"$LOG_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
      pass "Docker daemon: started $(docker version -f '{{.Server.Version}}')" \
        "($(docker info -f '{{.Driver}}') storage, $((SECONDS - t)) s)"
      return
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  DOCKERD_PID=
  die "Docker daemon did not start ($LOG_DIR/dockerd.log)"
}

# ---------------------------------------------------------------------------------------------
# The stand-in base: Debian bookworm with Debian's python3 (3.11) and its venv module, shaped
# like python:3.11-slim-bookworm where it matters to the Dockerfiles.

# host_archive REGEX: the first archive URI of the host's apt sources that matches.
host_archive() {
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed -E 's/\[[^]]*\]//' | awk '{print $2}'
  } | grep -E "$1" | head -n 1 || true
}

build_base() {
  local t=$SECONDS mirror security rootfs
  if [[ $BASE_IMAGE != "$STANDIN" ]]; then
    note "base: $BASE_IMAGE (given; docker build pulls it when absent)"
    return
  fi
  if [[ ${FORCE:-0} != 1 ]] && docker image inspect "$STANDIN" >/dev/null 2>&1; then
    pass "stand-in base $STANDIN: cached (FORCE=1 rebuilds it)"
    return
  fi
  [[ $(id -u) == 0 ]] || die "the stand-in base needs root (debootstrap); or set BASE_IMAGE"
  command -v debootstrap >/dev/null || apt_install debootstrap
  # The same archive the host's apt uses (a mirror or proxy may stand in for deb.debian.org).
  mirror=${DEBIAN_MIRROR:-$(host_archive '/debian/?$')}
  mirror=${mirror:-http://deb.debian.org/debian}
  security=${DEBIAN_SECURITY_MIRROR:-$(host_archive '/debian-security/?$')}
  security=${security:-http://deb.debian.org/debian-security}
  local proxy=
  eval "$(apt-config shell proxy Acquire::http::Proxy)"
  rootfs=$(mktemp -d -p /var/tmp)  # large: not on a tmpfs /tmp
  TMP_ROOTFS=$rootfs
  chmod 755 "$rootfs" # it becomes the image's /: mktemp's 0700 would lock every other user out
  note "debootstrap bookworm from $mirror (log: $LOG_DIR/debootstrap.log)"
  http_proxy=${proxy:-${http_proxy:-}} debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    bookworm "$rootfs" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1 ||
    die "debootstrap failed ($LOG_DIR/debootstrap.log)"

  # Like the official image: pip may install into the base Python (no EXTERNALLY-MANAGED).
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Registries are reached the way the host reaches them: its CA bundle (a TLS-inspecting
  # proxy's CA may be in it) and its apt settings for the archive (proxy, date checks).
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  apt-config dump | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' \
    >"$rootfs/etc/apt/apt.conf.d/90host-archive" || true
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

  # /dev, /proc and /sys are the runtime's to fill.
  tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      - "$STANDIN" >/dev/null || die "docker import of the stand-in base failed"
  rm -rf "$rootfs"
  TMP_ROOTFS=
  pass "stand-in base $STANDIN: built, $(docker run --rm "$STANDIN" python3 --version)" \
    "($(elapsed $((SECONDS - t))))"
}

# ---------------------------------------------------------------------------------------------
# The two images, from the lock

# build_image NAME DOCKERFILE TAG: prints each step with the seconds since the build began, so
# a slow step shows; the whole log goes to $LOG_DIR/build-NAME.log.
build_image() {
  local name=$1 dockerfile=$2 tag=$3 t=$SECONDS old new size took
  local log=$LOG_DIR/build-$name.log
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  note "building $tag from $dockerfile (log: $log)"
  # --force-rm: a failed step leaves no container behind (on vfs, a full copy of the image).
  if ! docker build --network host --force-rm --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -f "$dockerfile" -t "$tag" . 2>&1 | tee "$log" | while IFS= read -r line; do
      [[ $line != Step* ]] || printf '      [%4d s] %.110s\n' $((SECONDS - t)) "$line"
    done; then
    tail -n 30 "$log" | indent
    die "$name image: build failed ($(elapsed $((SECONDS - t))), $log)"
  fi
  took=$((SECONDS - t))
  new=$(docker image inspect -f '{{.Id}}' "$tag")
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  pass "$name image: built from $(grep -oE 'requirements/[a-z]+\.txt' "$dockerfile" |
    head -n 1) with --require-hashes ($(elapsed "$took"), $((size / 1000000)) MB)"
  # The image this build replaced: nothing refers to it any more, and on vfs it is big.
  if [[ -n $old && $old != "$new" ]]; then
    t=$SECONDS
    docker rmi "$old" >/dev/null 2>&1 || true
    note "removed the $name image this build replaced ($((SECONDS - t)) s)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Checks on the running containers

# in_server CMD...: runs in the server container as its image's user.
in_server() { docker exec "$SERVER" "$@"; }

check_users() {
  local image user
  for image in "$SERVER_IMAGE" "$EDGE_IMAGE"; do
    user=$(docker image inspect -f '{{.Config.User}}' "$image")
    if [[ $user == asc ]]; then
      pass "$image: runs as user asc"
    else
      fail "$image: runs as '${user:-root}', not asc"
    fi
  done
}

check_edge_has_no_torch() {
  local out
  if out=$(docker run --rm --entrypoint python "$EDGE_IMAGE" -c 'import torch' 2>&1); then
    fail "edge image: 'import torch' succeeded"
  elif grep -q "No module named 'torch'" <<<"$out"; then
    pass "edge image: no torch ('import torch' fails: No module named 'torch')"
  else
    fail "edge image: 'import torch' failed for another reason: ${out##*$'\n'}"
  fi
}

start_server() {
  local t=$SECONDS status
  docker network create "$NET" >/dev/null || die "docker network create $NET failed"
  # The compose file's CPU variant: ASC_DEVICE=cpu, small batches; its stop_grace_period.
  docker run -d --name "$SERVER" --network "$NET" --network-alias server --stop-timeout 40 \
    -e ASC_DEVICE=cpu -e ASC_MAX_BATCH=8 "$SERVER_IMAGE" serve >/dev/null ||
    die "server container did not start"
  note "server container $SERVER on network $NET; waiting for its healthcheck"
  while :; do
    status=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$SERVER")
    case $status in
      "running healthy")
        pass "server container: healthy after $((SECONDS - t)) s (docker inspect)"
        return
        ;;
      "running unhealthy") break ;;
      running*) ;;
      *) break ;;
    esac
    ((SECONDS - t < HEALTH_TIMEOUT)) || break
    sleep 2
  done
  docker logs "$SERVER" 2>&1 | tail -n 20 | indent
  die "server container: '$status' after $((SECONDS - t)) s, never healthy"
}

check_server_inside() {
  local uid out
  # PID 1 is asc-server itself (exec-form ENTRYPOINT): its real and effective uid.
  uid=$(in_server awk '/^Uid:/ {print $2 "/" $3}' /proc/1/status)
  if [[ $uid == 10001/10001 ]]; then
    pass "server process: runs as uid 10001 ($(in_server id -un))"
  else
    fail "server process: uid $uid, not 10001"
  fi
  # What the server loaded is in its "listening" line; the files must be readable by its user.
  if out=$(in_server python -c 'import os
for k in ("ASC_ENSEMBLE", "ASC_DETECTOR"):
    with open(os.environ[k], "rb") as f:
        f.read(1)
print(os.environ["ASC_ENSEMBLE"], os.environ["ASC_DETECTOR"])' 2>&1) &&
    docker logs "$SERVER" 2>/dev/null | grep -q '"event": "listening"'; then
    pass "server process: reads its models ($out) and loaded them"
  else
    fail "server process: cannot read or load its models: ${out##*$'\n'}"
  fi
  if out=$(in_server python -c 'import torch, torchaudio
from asc.torchaudio_pair import load_torchaudio
load_torchaudio()
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, extension loads")' 2>&1) &&
    [[ $out == "torch 2.11.0"*"torchaudio 2.11.0"* ]]; then
    pass "server image: $out"
  else
    fail "server image: torch/torchaudio check: ${out##*$'\n'}"
  fi
}

stream_samples() {
  local t=$SECONDS jsonl=$LOG_DIR/edge.jsonl args=() codec out
  for codec in "${CODECS[@]}"; do args+=("--codec=$codec"); done
  # The compose file's edge-sim, once through, with JSON lines on stdout.
  if ! docker run --rm --name "$RUN_ID-edge" --network "$NET" "$EDGE_IMAGE" stream \
    --server=server:50051 "${args[@]}" --labels-from=samples/meta.csv --jsonl=- samples \
    >"$jsonl" 2>"$LOG_DIR/edge.log"; then
    tail -n 20 "$LOG_DIR/edge.log" | indent
    fail "edge container: stream failed ($LOG_DIR/edge.log)"
    return
  fi
  # Every clip of samples/meta.csv, on every path: a summary with its true label and a scene.
  if out=$(python3 - "$jsonl" samples/meta.csv "${CODECS[@]}" <<'EOF'
import csv, json, sys

jsonl, meta, *paths = sys.argv[1:]
with open(meta, newline="") as f:
    labels = sorted(row["scene_label"] for row in csv.DictReader(f, delimiter="\t"))
records = [json.loads(line) for line in open(jsonl) if line.strip()]
problems, parts = [], []
for path in paths:
    summaries = [r for r in records if r["type"] == "summary" and r["path"] == path]
    got = sorted(r["true_label"] for r in summaries)
    if got != labels:
        problems.append(f"{path}: labels {got} != {labels}")
    if not all(r["fine_label"] for r in summaries):
        problems.append(f"{path}: a summary without a predicted scene")
    totals = [r for r in records if r["type"] == "totals" and r["path"] == path]
    accuracy = totals[0]["accuracy"] if totals else None
    acc = "?" if accuracy is None else f"{accuracy:.2f}"
    parts.append(f"{path} {len(summaries)}/{len(labels)} clips, accuracy {acc}")
print("; ".join(problems or parts))
sys.exit(bool(problems))
EOF
  ); then
    pass "edge container: streamed samples/ with labels: $out ($((SECONDS - t)) s)"
  else
    fail "edge container: results: $out ($jsonl)"
  fi
}

check_metrics() {
  local metrics=$LOG_DIR/metrics.txt codec missing=()
  # From another container on the network, by the service's name, as Prometheus scrapes it.
  if ! docker run --rm --network "$NET" --entrypoint python "$EDGE_IMAGE" -c 'import urllib.request
print(urllib.request.urlopen("http://server:9100/metrics", timeout=10).read().decode())' \
    >"$metrics" 2>"$LOG_DIR/metrics.log"; then
    fail "metrics: http://server:9100/metrics unreachable ($LOG_DIR/metrics.log)"
    return
  fi
  for codec in "${CODECS[@]}"; do
    grep -qE "^asc_labelled_clips_total\{[^}]*codec_path=\"$codec\"[^}]*\} [1-9]" "$metrics" ||
      missing+=("asc_labelled_clips_total{codec_path=\"$codec\"}")
  done
  if ((${#missing[@]} == 0)); then
    pass "metrics: server:9100/metrics has asc_labelled_clips_total for ${CODECS[*]}" \
      "($(grep -c '^asc_' "$metrics") asc_ samples)"
  else
    fail "metrics: missing ${missing[*]} ($metrics)"
  fi
}

# A device streaming in real time when SIGTERM comes: the drain has a stream to finish.
stop_server() {
  local t code log=$LOG_DIR/server.log open=no
  docker run -d --name "$EDGE_LOOP" --network "$NET" "$EDGE_IMAGE" stream \
    --server=server:50051 --codec=opus:32k --labels-from=samples/meta.csv --realtime --loop \
    --retry-forever samples >/dev/null
  for _ in $(seq 30); do # until the server has the stream open (its asc_active_streams gauge)
    if in_server python -c 'import sys, urllib.request as u
m = u.urlopen("http://127.0.0.1:9100/metrics").read().decode()
sys.exit(not any(l.startswith("asc_active_streams ") and float(l.split()[1]) >= 1
                 for l in m.splitlines()))' 2>/dev/null; then
      open=yes
      break
    fi
    sleep 1
  done
  t=$SECONDS
  docker stop "$SERVER" >/dev/null # SIGTERM, then SIGKILL after --stop-timeout (40 s)
  code=$(docker inspect -f '{{.State.ExitCode}}' "$SERVER")
  docker logs "$SERVER" >"$log" 2>&1
  if [[ $open == yes && $code == 0 ]] && grep -q 'stopping: draining streams' "$log" &&
    grep -q 'stopped' "$log" && ! grep -q 'drain timed out' "$log"; then
    pass "server: SIGTERM with a stream open: drained and exited 0 in $((SECONDS - t)) s" \
      "(log: 'stopping: draining streams', 'stopped')"
  else
    tail -n 15 "$log" | indent
    fail "server: SIGTERM: stream open: $open, exit code $code; drain messages missing or" \
      "drain timed out ($log)"
  fi
  if grep -q Traceback "$log"; then
    fail "server: a traceback in its log ($log)"
  fi
}

# ---------------------------------------------------------------------------------------------

note "logs: $LOG_DIR"
start_docker
build_base
build_image server server/Dockerfile "$SERVER_IMAGE"
build_image edge edge/Dockerfile "$EDGE_IMAGE"
check_users
check_edge_has_no_torch
start_server
check_server_inside
stream_samples
check_metrics
stop_server
