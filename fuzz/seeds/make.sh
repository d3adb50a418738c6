#!/usr/bin/env bash
# Writes the starting seeds of every target into corpus/<target>/ with real tools:
# Debian's htpasswd (apache2-utils) for bcrypt, apr1, {SHA}, crypt and plain lines,
# openssl passwd -1 for MD5-crypt, the repository's own proxy.toml files, and manifests
# of the shapes registries store (Docker schema 2, manifest list, OCI manifest, OCI
# index, artifact with subject, schema 1). scripts/fuzz.sh never runs this: the seeds
# were written once, fuzzed, and minimised with `cargo afl cmin` into what is committed.
# Rerun only to start a corpus afresh (salts are random).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=..
for t in htpasswd config oci range manifest; do mkdir -p "corpus/$t"; done

# --- htpasswd: file text, NUL, user, NUL, password ---------------------------------
h() { htpasswd -nb "$@" | head -n1; }
bcrypt4=$(h -B -C 4 alice 'correct horse')
bcrypt5=$(h -B -C 5 bob 's3cret:with colon')
bcrypt12=$(h -B -C 12 slow 'slow')
apr1=$(h -m carol 'pässwörd')
sha=$(h -s dave 'x')
des=$(h -d erin 'password')
plain=$(h -p frank 'plain')
md5=$(printf 'grace:%s' "$(openssl passwd -1 -salt abcdefgh hunter2)")
seed() { printf '%s\0%s\0%s' "$1" "$2" "$3" >"corpus/htpasswd/$4"; }
seed "$bcrypt4"$'\n' alice 'correct horse' bcrypt-match
seed "$bcrypt5"$'\n' bob 'wrong' bcrypt-colon-wrong
seed "$bcrypt12"$'\n' slow 'slow' bcrypt-cost12
seed "$apr1"$'\n' carol 'pässwörd' apr1-utf8
seed "$sha"$'\n' dave 'x' sha
seed "$des"$'\n' erin 'password' crypt-des
seed "$plain"$'\n' frank 'plain' plaintext
seed "$md5"$'\n' grace 'hunter2' md5crypt
seed "# comment"$'\r\n'"$bcrypt4"$'\r\n'"$sha:comment field"$'\r\n'$'\r\n' nobody 'x' crlf-comments
seed $'\xef\xbb\xbf'"$apr1"$'\n'"$apr1"$'\n'" $sha"$'\n'"henry:"$'\n'"ivan"$'\n' carol 'pässwörd' bom-duplicates-problems
seed "$(cat "$repo/tests/data/htpasswd/vectors.htpasswd")" apr1-one x vectors
seed "$(cat "$repo/tests/data/htpasswd/unsupported.htpasswd")" x x unsupported
printf '%s' "$bcrypt4" >corpus/htpasswd/no-password

# --- config: proxy.toml text ----------------------------------------------------------
cp "$repo/proxy.toml" corpus/config/proxy.toml
cp "$repo/examples/proxy.service.toml" corpus/config/service.toml
cat >corpus/config/upstream.toml <<'EOF'
[server]
listen = ["127.0.0.1:5443", "[::1]:5443"]
read_timeout = "15m"
header_timeout = "10s"
idle_timeout = "75s"
shutdown_grace = "1h30m"
max_connections = 100
[tls]
certificate = "certs/server.crt"
key = "certs/server.key"
[auth]
htpasswd = "auth/htpasswd"
[clients]
reject_old_docker = false
[upstream]
balance = "least_conn"
ca = "certs/upstream-ca.crt"
[upstream.health_check]
interval = "5s"
path = "/v2/"
[[upstream.server]]
url = "https://10.0.0.1:5000"
weight = 3
max_fails = 2
fail_timeout = "30s"
max_conns = 10
[[upstream.server]]
url = "http://[::1]:5001/"
backup = true
[[upstream.server]]
url = "http://registry.internal:5002"
down = true
EOF
cat >corpus/config/s3.toml <<'EOF'
[tls]
certificate = "c.crt"
key = "c.key"
generate_if_missing = true
hosts = ["registry.example.com", "10.0.0.5"]
[auth]
htpasswd = "htpasswd"
realm = "Private"
[registry]
storage = "s3"
bucket = "images"
region = "eu-west-1"
endpoint = "http://127.0.0.1:9000"
path_style = true
access_key_id = "AKIAEXAMPLE"
secret_access_key_file = "secret"
redirect = true
redirect_endpoint = "https://cdn.example.com"
create_only = "fail"
read_only = false
delete = true
secret = "0123456789abcdef0123456789abcdef"
[registry.gc]
interval = "24h"
grace = "1h"
[registry.upload_purge]
enabled = true
age = "168h"
interval = "24h"
[metrics]
listen = "127.0.0.1:9090"
[log]
format = "text"
EOF
printf '[server]\nlisten = "bad"\nread_timeout = "30"\n[tls]\nkey = 1\n' >corpus/config/errors.toml

# --- oci: one method byte (index into GET HEAD PUT POST PATCH DELETE OPTIONS TRACE) --
d=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
d512=sha512:$(printf 'a%.0s' $(seq 128))
o() { printf "\\x$(printf %02x "$1")%s" "$2" >"corpus/oci/$3"; }
o 0 /v2/ base
o 0 '/v2/_catalog?n=10&last=library%2Fubuntu' catalog
o 1 '/v2/library/ubuntu/tags/list?n=2&last=v1' tags
o 0 /v2/library/ubuntu/manifests/latest manifest-tag
o 1 "/v2/a0/b-c/d__e/f.g/manifests/$d" manifest-digest
o 2 /v2/team/app/manifests/v1.0.0-rc_1 put-manifest
o 5 "/v2/team/app/manifests/$d" delete-manifest
o 0 "/v2/team/app/blobs/$d512" blob-sha512
o 5 "/v2/team/app/blobs/$d" delete-blob
o 3 /v2/team/app/blobs/uploads/ start-upload
o 3 "/v2/team/app/blobs/uploads/?digest=$d" monolithic
o 3 "/v2/team/app/blobs/uploads/?mount=$d&from=library/base" mount
o 4 '/v2/team/app/blobs/uploads/0b7ec2a3-5a8f-4d0e-9f38-1d2a3c4b5e6f?_state=abc%3D%3D' patch-upload
o 2 "/v2/team/app/blobs/uploads/0b7ec2a3-5a8f-4d0e-9f38-1d2a3c4b5e6f?_state=x&digest=$d" finish-upload
o 5 /v2/team/app/blobs/uploads/0b7ec2a3-5a8f-4d0e-9f38-1d2a3c4b5e6f cancel-upload
o 0 "/v2/team/app/referrers/$d?artifactType=application%2Fvnd.example%2Bjson" referrers
o 6 /v2/Bad/Name/manifests/latest bad-name
o 0 /v2/a/../b/manifests/x dotdot
o 0 /other/path not-v2

# --- range: blob size, newline, header value ---------------------------------------
r() { printf '%s\n%s' "$1" "$2" >"corpus/range/$3"; }
r 10 'bytes=0-3' first-four
r 10 'bytes=5-' open-end
r 10 'bytes=-3' suffix
r 10 'bytes=8-100' past-end
r 10 'bytes=10-' unsatisfiable
r 10 'bytes=-0' zero-suffix
r 10 'bytes=0-1,3-4' multiple
r 10 'items=0-1' other-unit
r 0 'bytes=0-0' empty-blob
r 18446744073709551615 'bytes=18446744073709551614-' huge
r 1048576 '0-1048575' content-range
r 1048576 'bytes 1048576-2097151' content-range-bytes-space
r 1048576 'bytes=0-65535' content-range-bytes-equals

# --- manifest: raw JSON, or Content-Type, newline, body -------------------------------
c=sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7
l1=sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f
l2=sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b
cat >corpus/manifest/docker-schema2.json <<EOF
{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 7023,
      "digest": "$c"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32654,
         "digest": "$l1"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 16724,
         "digest": "$l2",
         "urls": ["https://mcr.microsoft.com/v2/windows/blobs/$l2"]
      }
   ]
}
EOF
{ printf 'application/vnd.docker.distribution.manifest.list.v2+json\n'; cat <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":7143,"digest":"$l1","platform":{"architecture":"ppc64le","os":"linux"}},{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":7682,"digest":"$l2","platform":{"architecture":"amd64","os":"linux","features":["sse4"]}}]}
EOF
} >corpus/manifest/docker-list-content-type
cat >corpus/manifest/oci-manifest.json <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$c","size":7023},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$l1","size":32654}],"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}
EOF
cat >corpus/manifest/oci-index.json <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$l1","size":7143,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$d512","size":7682}]}
EOF
{ printf 'application/vnd.oci.image.manifest.v1+json; charset=utf-8\n'; cat <<EOF
{"schemaVersion":2,"artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/json","digest":"$l2","size":100}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$l1","size":500}}
EOF
} >corpus/manifest/oci-artifact-subject
cat >corpus/manifest/schema1.json <<EOF
{
   "schemaVersion": 1,
   "name": "library/hello-world",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "$l1"},
      {"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}
   ],
   "history": [{"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\"}"}],
   "signatures": [{"header": {"jwk": {"crv": "P-256", "kid": "OD6I:6DRK", "kty": "EC", "x": "3gAw", "y": "t72J"}, "alg": "ES256"}, "signature": "XREm0L8WNn27Ga_iE_vRnTxVMhhYY0Zst_FfkKopg6gWSoTOZTuW4rK0fg_IqnKkEKlbcm7ioKkgFhdHFmaZiEg", "protected": "eyJmb3JtYXRMZW5ndGgiOjY2MjgsImZvcm1hdFRhaWwiOiJDbjAiLCJ0aW1lIjoiMjAxNS0wNC0wOFQxODo1Mjo1OVoifQ"}]
}
EOF
printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"%s","size":1},"layers":[]}' "$c" >corpus/manifest/docker-layerless.json
