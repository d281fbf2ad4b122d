#!/usr/bin/env bash
# Development credentials under certs/ (gitignored, kept out of images by .dockerignore):
#   ca.crt, ca.key            a development CA (keep ca.key to yourself; nothing mounts it)
#   server.crt, server.key    the server: localhost, 127.0.0.1, ::1, server, envoy (+ SERVER_NAMES)
#   envoy.crt, envoy.key      Envoy's client certificate towards the servers (CN envoy)
#   DEVICE.crt, DEVICE.key    one client certificate per device; its CN is the device id
#   tokens.txt                the server's file of 'DEVICE sha256:<hex>' lines
#   DEVICE.token              each device's bearer token, written once
#
#   make certs                                   # devices edge-sim and edge-1
#   make certs DEVICES="kitchen-01 hall-02"      # adds these; existing files are never replaced
#   make certs CERTS_GID=10001                   # keys and tokens readable by group 10001 (the
#                                                # compose containers' user), else owner only
set -euo pipefail

out=${CERTS_DIR:-certs}
devices=${DEVICES:-edge-sim edge-1}
days=${CERTS_DAYS:-825}
py=${PY:-.venv/bin/python}
gid=${CERTS_GID:-}
server_names=(localhost server envoy ${SERVER_NAMES:-})

command -v openssl >/dev/null || { echo "make-certs: openssl is missing (make setup installs it)" >&2; exit 1; }
umask 077
mkdir -p "$out"

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f "$out/ca.crt" ]; then
  new_key "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -out "$out/ca.crt" -days 3650 -sha256 \
    -subj "/O=asc-stream development/CN=asc-stream development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  echo "make-certs: new CA $out/ca.crt"
fi

# issue NAME CN EXTENDED_KEY_USAGE [SUBJECT_ALT_NAME]
issue() {
  local name=$1 cn=$2 eku=$3 san=${4:-}
  [ -f "$out/$name.crt" ] && return 0
  new_key "$out/$name.key"
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$ext"
  openssl req -new -key "$out/$name.key" -subj "/O=asc-stream/CN=$cn" 2>/dev/null |
    openssl x509 -req -CA "$out/ca.crt" -CAkey "$out/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days "$days" -sha256 -extfile "$ext" -out "$out/$name.crt" 2>/dev/null
  rm -f "$ext"
  echo "make-certs: $out/$name.crt (CN $cn)"
}

san="IP:127.0.0.1,IP:::1"
for n in "${server_names[@]}"; do san+=",DNS:$n"; done
# clientAuth too: the server's own healthcheck presents it under mutual TLS.
issue server asc-server serverAuth,clientAuth "$san"
issue envoy envoy clientAuth

for device in $devices; do
  if ! [[ $device =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
    echo "make-certs: device id '$device': use 1-64 letters, digits, '.', '_' or '-'" >&2; exit 2
  fi
  case $device in envoy|asc-server)
    echo "make-certs: '$device' names a certificate of the stack, not a device" >&2; exit 2;;
  esac
  issue "$device" "$device" clientAuth
  if [ ! -f "$out/$device.token" ]; then
    "$py" -m server.cli add-device "$device" --tokens "$out/tokens.txt" --token-out "$out/$device.token"
  fi
done

chmod 644 "$out"/*.crt
chmod 600 "$out"/*.key "$out"/*.token "$out/tokens.txt"
chmod 700 "$out"
if [ -n "$gid" ]; then
  chgrp "$gid" "$out" "$out"/*.key "$out"/*.token "$out/tokens.txt"
  chmod 750 "$out"
  chmod 640 "$out"/*.key "$out"/*.token "$out/tokens.txt"
  chmod 600 "$out/ca.key"
fi
