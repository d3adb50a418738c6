#!/usr/bin/env bash
# Single-download speed of a 250 MiB blob over HTTP/1.1 and HTTP/2 (curl, TLS), for
# two portcullis binaries taking turns on the same all-in-one storage (interleaved
# rounds, so load from elsewhere on the machine hits both alike).
# Usage: bench/download-speed.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (bench/results/memory.md)
set -euo pipefail
before=$1 after=$2 rounds=${3:-3}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/auth"
htpasswd -bcB "$work/auth/htpasswd" bench bench-secret 2>/dev/null
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$(dirname "$0")/../proxy.toml" > "$work/proxy.toml"
head -c $((250 << 20)) /dev/urandom > "$work/blob"
digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)
base=https://127.0.0.1:$port
start() {
    "$1" serve -c "$work/proxy.toml" >>"$work/log" 2>&1 & pid=$!
    for _ in $(seq 100); do curl -s --cacert "$work/certs/ca.crt" "$base/v2/" -o /dev/null && return; sleep 0.2; done
    echo "server did not start" >&2; exit 1
}
c() { curl -sS --cacert "$work/certs/ca.crt" -u bench:bench-secret "$@"; }
start "$before"
loc=$(c -X POST -D - -o /dev/null "$base/v2/big/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in /*) loc=$base$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
c -X PUT --data-binary @"$work/blob" -H 'content-type: application/octet-stream' "$loc${sep}digest=$digest" -o /dev/null -w 'push %{http_code}\n'
kill $pid; wait $pid 2>/dev/null || true
for r in $(seq "$rounds"); do
    for which in before after; do
        bin=${!which}
        start "$bin"
        for v in http1.1 http2; do
            s=$(c --$v -o /dev/null -w '%{speed_download}' "$base/v2/big/blobs/$digest")
            echo "round=$r bin=$which proto=$v MiB/s=$(python3 -c "print(round($s/1048576))")"
        done
        kill $pid; wait $pid 2>/dev/null || true
    done
done
