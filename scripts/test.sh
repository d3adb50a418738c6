#!/usr/bin/env bash
# Run the whole test suite. First installs the real tools the tests talk to when they
# are missing (Debian packages): docker-registry (distribution 2.8, the upstream),
# skopeo (the client for push/pull round trips), apache2-utils (htpasswd vectors),
# openssl (keys in PKCS#1 and SEC1 form, chain verification), systemd (for
# `systemd-analyze verify` of the unit file; nothing is started), docker.io (dockerd
# and Debian's /usr/bin/docker, the client for login/push/pull; tests/docker.rs
# starts its own dockerd and needs root for it and for /etc/docker/certs.d).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
# Both halves of docker.io: dockerd may be on PATH from elsewhere, and a newer docker
# client in /usr/local/bin is not the one the tests use.
if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then need+=(docker.io); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# --all-targets: the library, the binary and every integration test (there are no
# doc tests). The summary line at the end adds up every test binary's result.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
