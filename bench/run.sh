#!/usr/bin/env bash
# Side-by-side benchmark: nginx + registry:2 recipe vs Portcullis + registry, same upstream.
#
#   bench/run.sh [--quick] [--keep]
#
# Everything runs on 127.0.0.1 inside a temp dir under /tmp that is removed on exit
# (every process this script started is stopped first). The markdown table goes to
# stdout and to bench/results/latest.md; raw figures to bench/results/latest.tsv.
# See bench/README.md for what every figure means and the knobs (environment variables).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)

QUICK=0
KEEP=${KEEP:-0}
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (try --help)" >&2; exit 64 ;;
    esac
done

PORTCULLIS=${PORTCULLIS:-$REPO_ROOT/target/release/portcullis}
if [[ $QUICK == 1 ]]; then
    WRK_SECONDS=${WRK_SECONDS:-3}
    H2_REQUESTS=${H2_REQUESTS:-3000}
    PUSH_RUNS=${PUSH_RUNS:-1}
else
    WRK_SECONDS=${WRK_SECONDS:-10}
    H2_REQUESTS=${H2_REQUESTS:-20000}
    PUSH_RUNS=${PUSH_RUNS:-3}
fi
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-8}
H2_CLIENTS=${H2_CLIENTS:-8}
H2_STREAMS=${H2_STREAMS:-10}
DL_RUNS=${DL_RUNS:-3}
DL_MIB=${DL_MIB:-250}
LAYERS_MIB=${LAYERS_MIB:-250,32,12,4}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}

# Progress and errors go to fd 9 = the script's original stderr, so they stay visible even
# inside functions whose stderr is redirected to a tool's output file.
exec 9>&2
log()  { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&9; }
warn() { printf '[bench %s] WARNING: %s\n' "$(date +%T)" "$*" >&9; }
die()  { printf '[bench %s] ERROR: %s\n' "$(date +%T)" "$*" >&9; exit 1; }

# ---------------------------------------------------------------- required tools
PATH=$PATH:/usr/sbin:/sbin   # nginx lives in /usr/sbin, which a non-root PATH may lack
missing=()
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("'$1' (Debian package: $2)")
}
need nginx nginx-light
need docker-registry docker-registry
need skopeo skopeo
need htpasswd apache2-utils
need wrk wrk
need h2load nghttp2-client
need openssl openssl
need curl curl
need python3 python3
need sha256sum coreutils
need timeout coreutils
need base64 coreutils
if ((${#missing[@]})); then
    printf 'run.sh: missing required tool(s):\n' >&9
    printf '  %s\n' "${missing[@]}" >&9
    printf 'install with: apt-get install nginx-light docker-registry skopeo apache2-utils wrk nghttp2-client openssl curl python3\n' >&9
    exit 69
fi
[[ -r /proc/self/stat ]] || die "/proc is not mounted: CPU and RSS figures come from /proc/PID/stat and /proc/PID/status"
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- temp dir, cleanup
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
PIDS=()          # every long-running process we started (nginx master, registry, portcullis)

children_of() { # PID -> direct children's pids
    local parent=$1 st rest f
    for f in /proc/[0-9]*/stat; do
        { st=$(<"$f"); } 2>/dev/null || continue
        rest=${st##*) }
        set -- $rest
        [[ ${2:-} == "$parent" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

stop_pid() { # PID: TERM (and its children, e.g. nginx workers), wait up to 5 s, then KILL
    local pid=$1 kids i
    alive "$pid" || return 0
    kids=$(children_of "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do alive "$k" && kill -KILL "$k" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

CHILD=""         # the load/push tool currently running (started in the background so signals act at once)
bounded() { # run "$@" as a background child and wait for it: a signal to this script interrupts the wait
    local rc=0
    "$@" 9>&- &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    [[ -n $CHILD ]] && stop_pid "$CHILD"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if [[ $KEEP == 1 ]]; then
        log "kept work dir $WORK (--keep)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted (SIGINT), cleaning up"; exit 130' INT
trap 'log "terminated (SIGTERM), cleaning up"; exit 143' TERM

# ---------------------------------------------------------------- helpers
free_ports() { # N -> N distinct free loopback ports (all bound at once, then released)
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

WAIT_WHY=""
wait_port() { # PORT PID NAME LOGFILE [SECONDS]: wait until 127.0.0.1:PORT accepts; 1 (+ WAIT_WHY) if PID died/timed out
    local port=$1 pid=$2 name=$3 logf=$4 secs=${5:-30} i st=0 tail_
    for ((i = 0; i < secs * 10; i++)); do
        if ! alive "$pid"; then
            wait "$pid" 2>/dev/null || st=$?
            WAIT_WHY="exited with status $st before listening on 127.0.0.1:$port"
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then WAIT_WHY=""; return 0; fi
        sleep 0.1
    done
    [[ -n $WAIT_WHY ]] || WAIT_WHY="did not listen on 127.0.0.1:$port within ${secs}s"
    tail_=$(tail -n 20 "$logf" 2>/dev/null || true)
    warn "$name (pid $pid) $WAIT_WHY; last lines of $logf:"
    printf '%s\n' "${tail_:-(no output)}" >&9
    WAIT_WHY+="; output: $(tail -n 3 "$logf" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
    [[ -s $logf ]] || WAIT_WHY+="(none)"
    return 1
}

render() { # TEMPLATE OUT: replace @NAME@ with the value of shell variable NAME
    python3 - "$1" "$2" <<'EOF'
import os, re, sys
src = open(sys.argv[1]).read()
def sub(m):
    v = os.environ.get("BENCH_" + m.group(1))
    if v is None:
        sys.exit("render: no value for @%s@ in %s" % (m.group(1), sys.argv[1]))
    return v
open(sys.argv[2], "w").write(re.sub(r"@([A-Z_]+)@", sub, src))
EOF
}

ticks() { # PID... -> sum of utime+stime (clock ticks) over those processes
    local sum=0 pid st rest
    for pid in "$@"; do
        { st=$(<"/proc/$pid/stat"); } 2>/dev/null || { warn "process $pid is gone"; return 1; }
        rest=${st##*) }          # fields from 3 (state) on; comm may contain spaces
        set -- $rest
        sum=$((sum + ${12} + ${13}))   # fields 14 (utime) and 15 (stime)
    done
    echo "$sum"
}

hwm_kib() { # PID -> VmHWM in KiB
    awk '/^VmHWM:/{print $2}' "/proc/$1/status"
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

calc() { python3 -c "import sys; print($1)"; }

# server_pids NAME -> every pid whose CPU counts for that server
server_pids() {
    case $1 in
        nginx) echo "$NGINX_PID $(children_of "$NGINX_PID")" ;;
        portcullis) echo "$PORTCULLIS_PID" ;;
        registry) echo "$REGISTRY_PID" ;;
    esac
}

# ---------------------------------------------------------------- metadata
put meta.mode "$([[ $QUICK == 1 ]] && echo quick || echo full)"
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.host "$(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
put meta.loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put meta.nginx "$(nginx -v 2>&1 | sed 's/.*: //')"
put meta.registry "$(docker-registry --version 2>&1 | awk '{print $NF}')"
put meta.skopeo "$(skopeo --version | awk '{print $NF}')"
put meta.wrk "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s"
put meta.h2load "h2load -n $H2_REQUESTS -c $H2_CLIENTS -m $H2_STREAMS"
put meta.download "${DL_MIB} MiB blob, curl --http1.1, $DL_RUNS runs"
put meta.push "layers of $LAYERS_MIB MiB, $PUSH_RUNS run(s)"
put meta.workdir "$WORK"

log "work dir $WORK ($([[ $QUICK == 1 ]] && echo quick || echo full) run)"
read -r REGISTRY_PORT NGINX_PORT PORTCULLIS_PORT < <(free_ports 3)
log "ports: registry $REGISTRY_PORT, nginx $NGINX_PORT, portcullis $PORTCULLIS_PORT"

# Everything the templates need, exported for render().
export BENCH_DIR=$WORK BENCH_CERTS=$WORK/certs BENCH_REGISTRY_PORT=$REGISTRY_PORT \
       BENCH_NGINX_PORT=$NGINX_PORT BENCH_PORTCULLIS_PORT=$PORTCULLIS_PORT
BENCH_SECRET=$(openssl rand -hex 24); export BENCH_SECRET

# ---------------------------------------------------------------- Portcullis binary?
PORTCULLIS_OK=1
PORTCULLIS_WHY=""
PORTCULLIS_FAILED=0   # present but misbehaving -> non-zero exit at the end
if [[ ! -e $PORTCULLIS ]]; then
    PORTCULLIS_OK=0; PORTCULLIS_WHY="binary not found at $PORTCULLIS (build it: cargo build --release, or set PORTCULLIS=path)"
elif [[ ! -x $PORTCULLIS ]]; then
    PORTCULLIS_OK=0; PORTCULLIS_WHY="$PORTCULLIS is not executable"; PORTCULLIS_FAILED=1
else
    pv=$(timeout 10 "$PORTCULLIS" --version 2>/dev/null | head -n1 || true)
    put meta.portcullis "${pv:-(no --version output)}, $PORTCULLIS, modified $(date -u -r "$PORTCULLIS" +%Y-%m-%dT%H:%M:%SZ)"
fi
[[ $PORTCULLIS_OK == 1 ]] || warn "Portcullis columns will be n/a: $PORTCULLIS_WHY"
commit=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
put meta.commit "$commit$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (+ uncommitted changes)' || true)"

# ---------------------------------------------------------------- 1. certificates
CERTS=$WORK/certs
mkdir -p "$CERTS"
certs_by=""
if [[ $PORTCULLIS_OK == 1 ]]; then
    if timeout 60 "$PORTCULLIS" certs --out "$CERTS" --host localhost --host 127.0.0.1 >"$WORK/certs.log" 2>&1 \
        && [[ -s $CERTS/ca.crt && -s $CERTS/server.crt && -s $CERTS/server.key ]]; then
        certs_by="portcullis certs"
    else
        warn "'portcullis certs' failed or wrote no ca.crt/server.crt/server.key; falling back to openssl. Its output:"
        cat "$WORK/certs.log" >&9 || true
        rm -rf "$CERTS"; mkdir -p "$CERTS"
    fi
fi
if [[ -z $certs_by ]]; then
    (
        cd "$CERTS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=Portcullis bench CA" -keyout ca.key -out ca.crt \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out leaf.crt
        cat leaf.crt ca.crt >server.crt
        chmod 600 ca.key server.key
    ) >"$WORK/certs.log" 2>&1 || { cat "$WORK/certs.log" >&9; die "openssl could not create the test certificates"; }
    certs_by="openssl (fallback)"
fi
put meta.certs "$certs_by; key $(openssl pkey -in "$CERTS/server.key" -noout -text 2>/dev/null | head -n1 | sed 's/[():]//g; s/ *$//')"
# skopeo: *.crt are CA roots, but a *.key without its *.cert is an error -> only ca.crt.
SKOPEO_CERTS=$WORK/skopeo-certs
mkdir -p "$SKOPEO_CERTS"; cp "$CERTS/ca.crt" "$SKOPEO_CERTS/ca.crt"
CA=$CERTS/ca.crt
log "certificates by $certs_by"

# ---------------------------------------------------------------- 2. htpasswd
HTPASSWD=$WORK/htpasswd
BCRYPT_USER=bench-bcrypt; BCRYPT_PASS=$(openssl rand -hex 12)
APR1_USER=bench-apr1;     APR1_PASS=$(openssl rand -hex 12)
{ htpasswd -c -b -B -C 5 "$HTPASSWD" "$BCRYPT_USER" "$BCRYPT_PASS" && htpasswd -b -m "$HTPASSWD" "$APR1_USER" "$APR1_PASS"; } \
    >"$WORK/htpasswd.log" 2>&1 || { cat "$WORK/htpasswd.log" >&9; die "htpasswd could not write $HTPASSWD"; }
grep -qF "$BCRYPT_USER:\$2y\$05\$" "$HTPASSWD" || die "htpasswd did not write a bcrypt cost-5 hash"
grep -qF "$APR1_USER:\$apr1\$" "$HTPASSWD" || die "htpasswd did not write an apr1 hash"
declare -A PASS=([$BCRYPT_USER]=$BCRYPT_PASS [$APR1_USER]=$APR1_PASS)
basic() { printf '%s:%s' "$1" "${PASS[$1]}" | base64 -w0; }

# ---------------------------------------------------------------- 3. upstream registry
mkdir -p "$WORK/registry-data"
render "$HERE/templates/registry.yml.in" "$WORK/registry.yml"
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 9>&- &
REGISTRY_PID=$!; PIDS+=("$REGISTRY_PID")
wait_port "$REGISTRY_PORT" "$REGISTRY_PID" docker-registry "$WORK/registry.log" 30 \
    || die "the upstream docker-registry did not start"
REG=http://127.0.0.1:$REGISTRY_PORT
code=$(curl -sS -o /dev/null -w '%{http_code}' "$REG/v2/") || true
[[ $code == 200 ]] || die "upstream registry answered GET /v2/ with HTTP $code (want 200)"
log "registry up (pid $REGISTRY_PID)"

push_blob() { # REPO FILE -> digest; monolithic POST + PUT ?digest= straight to the registry
    local repo=$1 file=$2 digest loc sep code
    digest=sha256:$(sha256sum "$file" | cut -c1-64)
    loc=$(curl -sS -D - -o /dev/null -X POST "$REG/v2/$repo/blobs/uploads/" \
        | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
    [[ -n $loc ]] || die "registry gave no upload Location for $repo"
    [[ $loc == /* ]] && loc=$REG$loc
    sep='?'; [[ $loc == *\?* ]] && sep='&'
    code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$file" -H 'Content-Type: application/octet-stream' \
        "$loc${sep}digest=$digest")
    [[ $code == 201 ]] || die "pushing $(basename "$file") to the registry: PUT answered HTTP $code (want 201)"
    echo "$digest"
}

head -c 1024 /dev/urandom >"$WORK/small.bin"
SMALL_DIGEST=$(push_blob bench/small "$WORK/small.bin")
head -c "$((DL_MIB * 1024 * 1024))" /dev/urandom >"$WORK/big.bin"
BIG_DIGEST=$(push_blob bench/big "$WORK/big.bin")
BIG_SIZE=$(stat -c %s "$WORK/big.bin")
rm -f "$WORK/big.bin"
SMALL_PATH=/v2/bench/small/blobs/$SMALL_DIGEST
BIG_PATH=/v2/bench/big/blobs/$BIG_DIGEST
log "seeded the registry: 1 KiB blob $SMALL_DIGEST, ${DL_MIB} MiB blob $BIG_DIGEST"

# ---------------------------------------------------------------- 4. nginx (recipe)
mkdir -p "$WORK/nginx"/{client_body,proxy,fastcgi,uwsgi,scgi}
if [[ $(id -u) == 0 ]]; then BENCH_USER_LINE="user root;"; else BENCH_USER_LINE="# (not root: workers keep our user)"; fi
export BENCH_USER_LINE
render "$HERE/templates/nginx.conf.in" "$WORK/nginx/nginx.conf"
nginx -t -q -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/t.log" 2>&1 \
    || { cat "$WORK/nginx/t.log" "$WORK/nginx/error.log" >&9 2>/dev/null; die "nginx -t rejected the generated config"; }
nginx -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 9>&- &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" "$NGINX_PID" nginx "$WORK/nginx/error.log" 30 || die "nginx did not start"
log "nginx up (master $NGINX_PID, workers $(children_of "$NGINX_PID" | tr '\n' ' '))"

# ---------------------------------------------------------------- 6. Portcullis
PORTCULLIS_PID=""
if [[ $PORTCULLIS_OK == 1 ]]; then
    render "$HERE/templates/proxy.toml.in" "$WORK/proxy.toml"
    "$PORTCULLIS" serve -c "$WORK/proxy.toml" >"$WORK/portcullis.log" 2>&1 9>&- &
    PORTCULLIS_PID=$!; PIDS+=("$PORTCULLIS_PID")
    if wait_port "$PORTCULLIS_PORT" "$PORTCULLIS_PID" portcullis "$WORK/portcullis.log" 30; then
        log "portcullis up (pid $PORTCULLIS_PID)"
    else
        PORTCULLIS_OK=0; PORTCULLIS_FAILED=1
        PORTCULLIS_WHY="'$PORTCULLIS serve -c proxy.toml' $WAIT_WHY"
        stop_pid "$PORTCULLIS_PID"
    fi
fi
if [[ $PORTCULLIS_OK == 1 ]]; then put portcullis.status ok; else put portcullis.status "n/a: $PORTCULLIS_WHY"; fi
put nginx.status ok

PROXIES=(nginx)
[[ $PORTCULLIS_OK == 1 ]] && PROXIES+=(portcullis)
port_of() { case $1 in nginx) echo "$NGINX_PORT" ;; portcullis) echo "$PORTCULLIS_PORT" ;; esac; }

# A failed check through nginx is fatal (the harness or the recipe is broken); through
# Portcullis it marks that figure invalid, is shouted on stderr and makes the exit code 3.
declare -A BROKEN=()   # "proxy case" -> reason
fail_case() { # PROXY CASE REASON
    if [[ $1 == nginx ]]; then die "nginx, $2: $3"; fi
    warn "PORTCULLIS, $2: $3"
    BROKEN["$1 $2"]=$3
    PORTCULLIS_FAILED=1
    put "$1.$2.error" "$3"
}

# ---------------------------------------------------------------- correctness checks
# check PROXY CASE PATH USER HTTPVER: 401 without credentials, 200 with them, right protocol.
check() {
    local proxy=$1 case=$2 path=$3 user=$4 hv=$5 url out
    url=https://127.0.0.1:$(port_of "$proxy")$path
    local opt=--http1.1; [[ $hv == 2 ]] && opt=--http2
    out=$(curl -sS $opt --cacert "$CA" -o /dev/null -w '%{http_code} %{http_version}' --max-time 120 "$url" 2>&1) || true
    [[ $out == "401 $hv" ]] || { fail_case "$proxy" "$case" "without credentials GET $path answered '$out' (want '401 $hv': is auth enforced?)"; return 1; }
    local body=/dev/null; [[ $path == "$SMALL_PATH" ]] && body=$WORK/check.body
    out=$(curl -sS $opt --cacert "$CA" -u "$user:${PASS[$user]}" -o "$body" \
        -w '%{http_code} %{http_version}' --max-time 120 "$url" 2>&1) || true
    [[ $out == "200 $hv" ]] || { fail_case "$proxy" "$case" "as $user GET $path answered '$out' (want '200 $hv')"; return 1; }
    if [[ $path == "$SMALL_PATH" ]] && ! cmp -s "$WORK/check.body" "$WORK/small.bin"; then
        fail_case "$proxy" "$case" "the 1 KiB blob came back with different bytes"; return 1
    fi
    return 0
}

declare -A CASE_PATH=([v2_bcrypt]=/v2/ [v2_apr1]=/v2/ [blob1k_bcrypt]=$SMALL_PATH)
declare -A CASE_USER=([v2_bcrypt]=$BCRYPT_USER [v2_apr1]=$APR1_USER [blob1k_bcrypt]=$BCRYPT_USER)
H1_CASES=(v2_bcrypt v2_apr1 blob1k_bcrypt)
H2_CASES=(v2_bcrypt blob1k_bcrypt)

for proxy in "${PROXIES[@]}"; do
    for c in "${H1_CASES[@]}"; do check "$proxy" "h1.$c" "${CASE_PATH[$c]}" "${CASE_USER[$c]}" 1.1 || true; done
    for c in "${H2_CASES[@]}"; do check "$proxy" "h2.$c" "${CASE_PATH[$c]}" "${CASE_USER[$c]}" 2 || true; done
    check "$proxy" dl "$BIG_PATH" "$BCRYPT_USER" 1.1 >/dev/null || true
done
log "correctness checks done (401 without credentials, 200 with, HTTP/1.1 and HTTP/2)"

# ---------------------------------------------------------------- CPU per request, wrk (HTTP/1.1)
run_wrk() { # PROXY CASE
    local proxy=$1 c=$2 key=$1.h1.$2 pids t0 r0 t1 r1 out n rps non2xx sockerr
    [[ -z ${BROKEN["$proxy h1.$c"]:-} ]] || return 0
    pids=$(server_pids "$proxy")
    out=$WORK/wrk.$proxy.$c.txt
    t0=$(ticks $pids) && r0=$(ticks "$REGISTRY_PID") \
        || { fail_case "$proxy" "h1.$c" "a server process is gone (crashed?)"; return 0; }
    bounded timeout $((WRK_SECONDS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" \
        -H "Authorization: Basic $(basic "${CASE_USER[$c]}")" \
        "https://127.0.0.1:$(port_of "$proxy")${CASE_PATH[$c]}" >"$out" 2>&1 \
        || { cat "$out" >&9; fail_case "$proxy" "h1.$c" "wrk failed"; return 0; }
    t1=$(ticks $pids) && r1=$(ticks "$REGISTRY_PID") \
        || { fail_case "$proxy" "h1.$c" "a server process exited during the load run (crashed?)"; return 0; }
    n=$(awk '/ requests in /{print $1}' "$out")
    rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' "$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/{sub(/.*Socket errors: /, ""); print}' "$out")
    [[ -n $n && $n -gt 0 ]] || { cat "$out" >&9; fail_case "$proxy" "h1.$c" "wrk completed no requests"; return 0; }
    if [[ $non2xx != 0 ]]; then
        fail_case "$proxy" "h1.$c" "wrk saw $non2xx non-2xx responses out of $n"; return 0
    fi
    [[ -z $sockerr ]] || put "$key.socket_errors" "$sockerr"
    put "$key.requests" "$n"
    put "$key.rps" "$rps"
    put "$key.cpu_us" "$(calc "($t1 - $t0) * 1e6 / $HZ / $n")"
    put "$key.reg_cpu_us" "$(calc "($r1 - $r0) * 1e6 / $HZ / $n")"
    log "  h1 $c via $proxy: $n requests, $rps req/s, proxy $(calc "round(($t1 - $t0) * 1e6 / $HZ / $n)") µs/req, registry $(calc "round(($r1 - $r0) * 1e6 / $HZ / $n)") µs/req${sockerr:+, socket errors: $sockerr}"
}

log "CPU per request over HTTP/1.1 keep-alive (wrk, ${WRK_SECONDS}s per case)"
for c in "${H1_CASES[@]}"; do
    for proxy in "${PROXIES[@]}"; do run_wrk "$proxy" "$c"; done
done

# ---------------------------------------------------------------- req/s, h2load (HTTP/2)
run_h2() { # PROXY CASE
    local proxy=$1 c=$2 key=$1.h2.$2 pids t0 r0 t1 r1 out ok total rps s2xx
    [[ -z ${BROKEN["$proxy h2.$c"]:-} ]] || return 0
    pids=$(server_pids "$proxy")
    out=$WORK/h2load.$proxy.$c.txt
    t0=$(ticks $pids) && r0=$(ticks "$REGISTRY_PID") \
        || { fail_case "$proxy" "h2.$c" "a server process is gone (crashed?)"; return 0; }
    bounded timeout 900 h2load -n "$H2_REQUESTS" -c "$H2_CLIENTS" -m "$H2_STREAMS" \
        -H "authorization: Basic $(basic "${CASE_USER[$c]}")" \
        "https://127.0.0.1:$(port_of "$proxy")${CASE_PATH[$c]}" >"$out" 2>&1 \
        || { cat "$out" >&9; fail_case "$proxy" "h2.$c" "h2load failed or timed out"; return 0; }
    t1=$(ticks $pids) && r1=$(ticks "$REGISTRY_PID") \
        || { fail_case "$proxy" "h2.$c" "a server process exited during the load run (crashed?)"; return 0; }
    grep -q '^Application protocol: h2$' "$out" || { cat "$out" >&9; fail_case "$proxy" "h2.$c" "h2load did not negotiate h2"; return 0; }
    total=$(awk '/^requests:/{print $2}' "$out")
    ok=$(awk '/^requests:/{for (i = 1; i <= NF; i++) if ($i ~ /^succeeded/) print $(i-1)}' "$out")
    s2xx=$(awk '/^status codes:/{print $3}' "$out")
    rps=$(awk '/^finished in/{print $4}' "$out")
    if [[ -z $ok || $ok == 0 || $s2xx != "$ok" || $ok != "$total" ]]; then
        cat "$out" >&9
        fail_case "$proxy" "h2.$c" "h2load: $total requests, ${ok:-0} succeeded, ${s2xx:-0} with 2xx"; return 0
    fi
    put "$1.tls" "$(awk -F': ' '/^TLS Protocol:/{p=$2} /^Cipher:/{c=$2} END{print p ", " c}' "$out")"
    put "$key.requests" "$ok"
    put "$key.rps" "$rps"
    put "$key.cpu_us" "$(calc "($t1 - $t0) * 1e6 / $HZ / $ok")"
    put "$key.reg_cpu_us" "$(calc "($r1 - $r0) * 1e6 / $HZ / $ok")"
    log "  h2 $c via $proxy: $ok requests, $rps req/s, proxy $(calc "round(($t1 - $t0) * 1e6 / $HZ / $ok)") µs/req, registry $(calc "round(($r1 - $r0) * 1e6 / $HZ / $ok)") µs/req"
}

log "requests/s over HTTP/2 (h2load -n $H2_REQUESTS -c $H2_CLIENTS -m $H2_STREAMS)"
for c in "${H2_CASES[@]}"; do
    for proxy in "${PROXIES[@]}"; do run_h2 "$proxy" "$c"; done
done

# ---------------------------------------------------------------- blob download MiB/s
download() { # TARGET -> appends one MiB/s figure to $WORK/dl.TARGET
    local t=$1 out code speed size
    if [[ $t == direct ]]; then
        out=$(curl -sS --http1.1 -o /dev/null -w '%{http_code} %{speed_download} %{size_download}' \
            --max-time 300 "$REG$BIG_PATH") || true
    else
        out=$(curl -sS --http1.1 --cacert "$CA" -u "$BCRYPT_USER:$BCRYPT_PASS" -o /dev/null \
            -w '%{http_code} %{speed_download} %{size_download}' --max-time 300 \
            "https://127.0.0.1:$(port_of "$t")$BIG_PATH") || true
    fi
    read -r code speed size <<<"$out"
    if [[ $code != 200 || $size != "$BIG_SIZE" ]]; then
        fail_case "$t" dl "download answered '$out' (want 200 and $BIG_SIZE bytes)"; return 0
    fi
    calc "$speed / 1048576" >>"$WORK/dl.$t"
}
log "downloading the ${DL_MIB} MiB blob $DL_RUNS times per target (curl, HTTP/1.1)"
DL_TARGETS=(direct "${PROXIES[@]}")
for ((r = 1; r <= DL_RUNS; r++)); do
    for t in "${DL_TARGETS[@]}"; do
        [[ -z ${BROKEN["$t dl"]:-} ]] && download "$t"
    done
done
for t in "${DL_TARGETS[@]}"; do
    [[ -s $WORK/dl.$t ]] || continue
    put "$t.dl.runs" "$(paste -sd' ' "$WORK/dl.$t")"
    log "  $t: $(xargs printf '%.0f ' <"$WORK/dl.$t")MiB/s"
done

# ---------------------------------------------------------------- push with skopeo
push() { # TARGET RUN: fresh random image (so nothing can be skipped or mounted), timed push
    local t=$1 r=$2 layout=$WORK/oci-$1-$2 dest args t0 t1 bytes
    bytes=$(python3 "$HERE/mkoci.py" "$layout" --layers-mib "$LAYERS_MIB") || die "mkoci.py could not build $layout"
    sync
    args=(--insecure-policy copy --retry-times 0)
    case $t in
        direct) dest=docker://127.0.0.1:$REGISTRY_PORT/bench/push-direct-$r:latest
                args+=(--dest-tls-verify=false) ;;
        *)      dest=docker://127.0.0.1:$(port_of "$t")/bench/push-$t-$r:latest
                args+=(--dest-creds "$APR1_USER:$APR1_PASS" --dest-cert-dir "$SKOPEO_CERTS") ;;
    esac
    t0=$(date +%s.%N)
    if ! bounded timeout 900 skopeo "${args[@]}" "oci:$layout:latest" "$dest" >"$WORK/skopeo.$t.$r.log" 2>&1; then
        cat "$WORK/skopeo.$t.$r.log" >&9
        rm -rf "$layout"
        fail_case "$t" push "skopeo copy to $dest failed"; return 0
    fi
    t1=$(date +%s.%N)
    rm -rf "$layout"
    # the manifest must now be in the upstream registry
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "$REG/v2/$(sed 's#^docker://[^/]*/##; s#:\([^:]*\)$#/manifests/\1#' <<<"$dest")") || true
    [[ $code == 200 ]] || { fail_case "$t" push "after the push the registry answers HTTP $code for the manifest"; return 0; }
    calc "$t1 - $t0" >>"$WORK/push.$t"
    put meta.push_bytes "$bytes"
    log "  push via $t (run $r): $(calc "round($t1 - $t0, 2)") s"
}
log "pushing a $(calc "round(sum(map(float, '$LAYERS_MIB'.split(','))))") MiB image with skopeo, $PUSH_RUNS run(s) per target"
for ((r = 1; r <= PUSH_RUNS; r++)); do
    for t in "${DL_TARGETS[@]}"; do
        [[ -z ${BROKEN["$t push"]:-} ]] && push "$t" "$r"
    done
done
for t in "${DL_TARGETS[@]}"; do
    [[ -s $WORK/push.$t ]] && put "$t.push.runs" "$(paste -sd' ' "$WORK/push.$t")"
done

# ---------------------------------------------------------------- peak RSS
nginx_detail="master $(hwm_kib "$NGINX_PID") KiB"
nginx_sum=$(hwm_kib "$NGINX_PID"); nginx_max_worker=0
for w in $(children_of "$NGINX_PID"); do
    k=$(hwm_kib "$w"); nginx_sum=$((nginx_sum + k))
    ((k > nginx_max_worker)) && nginx_max_worker=$k
    nginx_detail+=", worker $k KiB"
done
put nginx.rss_kib "$nginx_sum"
put nginx.rss_detail "$nginx_detail"
put nginx.rss_max_worker_kib "$nginx_max_worker"
[[ $PORTCULLIS_OK == 1 ]] && alive "$PORTCULLIS_PID" && put portcullis.rss_kib "$(hwm_kib "$PORTCULLIS_PID")"
put registry.rss_kib "$(hwm_kib "$REGISTRY_PID")"
for s in registry nginx portcullis; do
    [[ $s == portcullis && $PORTCULLIS_OK != 1 ]] && continue
    tk=$(ticks $(server_pids "$s")) && put "$s.cpu_total_s" "$(calc "$tk / $HZ")" || true
done
if [[ $PORTCULLIS_OK == 1 ]] && ! alive "$PORTCULLIS_PID"; then
    PORTCULLIS_FAILED=1; warn "portcullis exited during the run; last lines of its log:"; tail -n 20 "$WORK/portcullis.log" >&9
fi
put meta.loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS_DIR"
cp "$RESULTS" "$RESULTS_DIR/latest.tsv"
python3 "$HERE/report.py" "$RESULTS" >"$RESULTS_DIR/latest.md"
cat "$RESULTS_DIR/latest.md"
log "table written to $RESULTS_DIR/latest.md (raw figures: latest.tsv)"
if [[ $PORTCULLIS_FAILED == 1 ]]; then
    warn "Portcullis was present but failed (see the messages above and the notes under the table)"
    exit 3
fi
exit 0
