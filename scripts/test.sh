#!/usr/bin/env bash
# Check formatting and lints, then run the whole test suite. First installs the real
# tools the tests talk to when they are missing (Debian packages): docker-registry
# (distribution 2.8, the upstream), skopeo (the client for push/pull round trips),
# apache2-utils (htpasswd vectors), openssl (keys in PKCS#1 and SEC1 form, chain
# verification), systemd (for `systemd-analyze verify` of the unit file; nothing is
# started), nginx (the balancer is checked against a real nginx; run in a test
# folder, never as a service), docker.io (dockerd and Debian's /usr/bin/docker, the
# client for login/push/pull; tests/docker.rs starts its own dockerd and needs root
# for it and for /etc/docker/certs.d). The object-store tests need two real S3 servers:
# s3s-fs 0.14.1 (`cargo install`, ~10 min the first time; later versions need a newer
# rustc) and moto's server (PyPI `moto[server]`, in a virtualenv, for distribution's
# own S3 driver, which needs ListMultipartUploads); both end up in ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian installs nginx in /usr/sbin, which is not on every user's PATH; the tests find
# their tools through PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
# Both halves of docker.io: dockerd may be on PATH from elsewhere, and a newer docker
# client in /usr/local/bin is not the one the tests use.
if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then need+=(docker.io); fi
command -v nginx >/dev/null || need+=(nginx)
# moto goes into a virtualenv: Debian ships `python3 -m venv`'s pip only in python3-venv.
if ! command -v moto_server >/dev/null && ! dpkg -s python3-venv >/dev/null 2>&1; then need+=(python3-venv); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$bin:"*) ;; *) export PATH="$PATH:$bin" ;; esac
if ! command -v s3s-fs >/dev/null; then
  echo "installing s3s-fs 0.14.1 (the S3 server of the object-store tests)"
  cargo install --locked s3s-fs@0.14.1 --features binary
fi
if ! command -v moto_server >/dev/null; then
  echo "installing moto's S3 server (PyPI moto[server]) in a virtualenv"
  venv="${XDG_DATA_HOME:-$HOME/.local/share}/portcullis-tests/moto"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server]==5.2.*"
  ln -sf "$venv/bin/moto_server" "$bin/moto_server"
fi

# Formatting and lints fail the run before any test does (CI gates on both).
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "installing the $component toolchain component"
    rustup component add "$component"
  fi
done
if ! cargo fmt --check; then
  echo "FAILED: cargo fmt --check (run \`cargo fmt\` and commit the result)" >&2
  exit 1
fi
if ! cargo clippy --locked --all-targets -- -D warnings; then
  echo "FAILED: cargo clippy --locked --all-targets -- -D warnings" >&2
  exit 1
fi

# --all-targets: the library, the binary and every integration test (there are no
# doc tests). The summary line at the end adds up every test binary's result.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
# CI shows only the tail of this output: repeat each failed test's name and panic here.
if [ "$status" -ne 0 ]; then
  echo "failed tests and their panics (whole output above):"
  awk '/^---- .* stdout ----$/ { name = $2 }
       /panicked at/ { print "  " name ": " $0; n = 8; next }
       n > 0 { print "    " $0; n-- }
       /^test .* FAILED$/ { print }' "$log" | tail -n 80
fi
exit "$status"
