#!/usr/bin/env bash
# bench/s3-big-blob.sh: one blob of 5 GiB + 1 byte through Portcullis on a local s3s-fs:
# POST, one PATCH with the whole blob (curl -T, streamed), PUT ?digest= (the compose:
# 512 MiB server-side part copies), then GET it back and compare sha256. Prints the
# timings and the instance's peak RSS (VmHWM). Needs ~25 GB free in WORK (the blob file
# and s3s-fs's copies). Usage: PORTCULLIS=target/release/portcullis bench/s3-big-blob.sh [WORK]
set -euo pipefail
BIN=$(realpath "${PORTCULLIS:-target/release/portcullis}")
WORK=${1:-$(mktemp -d)}; mkdir -p "$WORK"; cd "$WORK"
mkdir -p s3/registry certs auth
s3s-fs --host 127.0.0.1 --port 19600 --access-key AK --secret-key SECRETKEY123 s3 > s3.log 2>&1 &
S3PID=$!
htpasswd -bBc -C 5 auth/htpasswd u pw 2>/dev/null
cat > proxy.toml <<T
[server]
listen = "127.0.0.1:19601"
[tls]
certificate = "certs/server.crt"
key = "certs/server.key"
generate_if_missing = true
[auth]
htpasswd = "auth/htpasswd"
[registry]
storage = "s3"
bucket = "registry"
endpoint = "http://127.0.0.1:19600"
root = "b"
access_key_id = "AK"
secret_access_key = "SECRETKEY123"
T
sleep 1
$BIN serve -c proxy.toml > p.log 2>&1 &
PPID2=$!
sleep 2
SIZE=$(( (5 << 30) + 1 ))
[ -s blob.sha ] || python3 - "$SIZE" <<'P' > blob.sha
import sys, hashlib
n = int(sys.argv[1]); h = hashlib.sha256(); block = bytes(range(256)) * 4096  # 1 MiB
with open("blob.bin", "wb") as f:
    left = n
    i = 0
    while left:
        b = block[: min(left, len(block))]
        b = bytes([i & 0xff]) + b[1:] if b else b
        f.write(b); h.update(b); left -= len(b); i += 1
print(h.hexdigest())
P
D="sha256:$(cat blob.sha)"
U=https://127.0.0.1:19601
LOC=$(curl -sS --cacert certs/ca.crt -u u:pw -X POST -D - -o /dev/null "$U/v2/b/big/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
echo "location $LOC"
t0=$(date +%s.%N)
curl -sS --cacert certs/ca.crt -u u:pw -X PATCH -H "Content-Type: application/octet-stream" -T blob.bin -D patch.h -o /dev/null "$LOC" || true
t1=$(date +%s.%N)
cat patch.h | tr -d '\r' | grep -i "^HTTP\|^range\|^location"
LOC2=$(tr -d '\r' < patch.h | awk 'tolower($1)=="location:"{print $2}')
curl -sS --cacert certs/ca.crt -u u:pw -X PUT -D put.h -o put.body "$LOC2&digest=$D"
t2=$(date +%s.%N)
tr -d '\r' < put.h | head -1; cat put.body
echo "PATCH $(python3 -c "print(round($t1-$t0,1))") s, PUT (compose) $(python3 -c "print(round($t2-$t1,1))") s"
grep VmHWM /proc/$PPID2/status
curl -sS --cacert certs/ca.crt -u u:pw "$U/v2/b/big/blobs/$D" | sha256sum
echo "want $(cat blob.sha)"
grep VmHWM /proc/$PPID2/status
ls -la s3/registry/b/docker/registry/v2/blobs/sha256/*/*/data || true
kill $PPID2 $S3PID
