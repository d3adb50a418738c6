#!/usr/bin/env bash
# Run the whole test suite. First installs the real tools the tests talk to when they
# are missing (Debian packages): docker-registry (distribution 2.8, the upstream),
# skopeo (the client for push/pull round trips), apache2-utils (htpasswd vectors),
# openssl (keys in PKCS#1 and SEC1 form, chain verification), systemd (for
# `systemd-analyze verify` of the unit file; nothing is started).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

cargo test --locked "$@"
