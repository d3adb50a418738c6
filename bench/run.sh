#!/usr/bin/env bash
# Side-by-side benchmarks of Portcullis against the nginx + registry:2 recipe.
#
#   bench/run.sh [--suite proxy|registry|s3|gc|access|floor|all] [--quick] [--keep] [--profile]
#
#   proxy:    nginx + registry vs Portcullis (upstream mode) + the same registry
#   registry: Portcullis all-in-one (bundled registry) vs docker-registry alone with
#             TLS + htpasswd vs nginx + docker-registry
#   s3:       Portcullis all-in-one with its registry on S3 (a local s3s-fs) vs on the
#             filesystem; blob GETs with and without redirect = true
#   gc:       portcullis gc (on fs and on S3) and docker-registry garbage-collect on a
#             registry of 10,000 blobs: wall time, peak RSS, CPU (not part of "all")
#   access:   Portcullis all-in-one with a 50-rule [access] policy vs none: server CPU
#             per authenticated 1 KiB blob GET (not part of "all"; bench/results/access.md)
#   floor:    Portcullis against floors: nginx proxying with no auth, nginx serving a
#             static file, and HAProxy / Caddy / nginx downloads of a 250 MiB blob (not
#             part of "all"; bench/results/floor.md)
#   all:      proxy, registry and s3, one after the other (the default)
#
#   --profile: sample Portcullis with perf (cpu-clock) in the floor suite's extra runs
#              and the registry suite's CPU runs (the same as PERF=1)
#
# Everything runs on 127.0.0.1 inside a temp dir under /tmp that is removed on exit
# (every process this script started is stopped first). The markdown tables go to
# stdout and to bench/results/latest.md (one table per suite); raw figures to latest.tsv.
# The gc, access and floor suites alone write bench/results/<suite>.md and .tsv instead.
# See bench/README.md for what every figure means and the knobs (environment variables).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)

QUICK=0
KEEP=${KEEP:-0}
SUITE=all
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --profile) PERF=1 ;;
        --suite) (($# >= 2)) || { echo "run.sh: --suite needs a value: proxy, registry, s3, gc, access, floor or all" >&2; exit 64; }
                 SUITE=$2; shift ;;
        --suite=*) SUITE=${1#--suite=} ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 64 ;;
    esac
    shift
done
case $SUITE in
    proxy) SUITES=(proxy) ;;
    registry) SUITES=(registry) ;;
    s3) SUITES=(s3) ;;
    gc) SUITES=(gc) ;;
    access) SUITES=(access) ;;
    floor) SUITES=(floor) ;;
    all) SUITES=(proxy registry s3) ;;
    *) echo "run.sh: unknown suite '$SUITE' (want proxy, registry, s3, gc, access, floor or all)" >&2; exit 64 ;;
esac

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
# registry suite (all-in-one); see bench/README.md
if [[ $QUICK == 1 ]]; then
    RS_SECONDS=${RS_SECONDS:-3}
    RSS_REQUESTS=${RSS_REQUESTS:-3200}
else
    RS_SECONDS=${RS_SECONDS:-10}
    RSS_REQUESTS=${RSS_REQUESTS:-32000}
fi
RS_RUNS=${RS_RUNS:-$PUSH_RUNS}
RS_H2_CLIENTS=${RS_H2_CLIENTS:-8}
RS_H2_STREAMS=${RS_H2_STREAMS:-10}
RSS_CLIENTS=${RSS_CLIENTS:-32}
RSS_STREAMS=${RSS_STREAMS:-10}
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
# the s3 suite's S3 server; cargo installs it in ~/.cargo/bin, which PATH may lack
S3S_FS=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
if [[ " ${SUITES[*]} " == *" s3 "* || " ${SUITES[*]} " == *" gc "* ]] && [[ ! -x $S3S_FS ]]; then
    missing+=("'s3s-fs' for the s3 and gc suites (not a Debian package: cargo install s3s-fs@0.14.1 --features binary; or set S3S_FS=path)")
fi
# the gc suite times each collection with GNU time (wall, peak RSS, user + sys CPU)
[[ " ${SUITES[*]} " != *" gc "* || -x /usr/bin/time ]] || missing+=("'/usr/bin/time' for the gc suite (Debian package: time)")
# the floor suite's peers, and perf for its --profile runs
if [[ " ${SUITES[*]} " == *" floor "* ]]; then
    need haproxy haproxy
    need caddy caddy
    [[ ${PERF:-0} != 1 ]] || need perf linux-perf
fi
if ((${#missing[@]})); then
    printf 'run.sh: missing required tool(s):\n' >&9
    printf '  %s\n' "${missing[@]}" >&9
    printf 'install with: apt-get install nginx-light docker-registry skopeo apache2-utils wrk nghttp2-client openssl curl python3 (floor suite: haproxy caddy; --profile: linux-perf)\n' >&9
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

forget_pid() { # PID: drop it from PIDS once it has been stopped (its number may be reused)
    local i keep=()
    for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

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

# h2load's summary in FILE as "total|succeeded|2xx|non-2xx|req/s" (a field is empty when
# its line is missing); read it with: IFS='|' read -r total ok s2xx bad rps < <(h2load_counts FILE)
h2load_counts() {
    awk '/^requests:/{t = $2; for (i = 1; i <= NF; i++) if ($i ~ /^succeeded/) ok = $(i-1)}
         /^status codes:/{s2 = $3; bad = $5 + $7 + $9}
         /^finished in/{rps = $4}
         END {print t "|" ok "|" s2 "|" bad "|" rps}' "$1"
}

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
put meta.suites "${SUITES[*]}"
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.host "$(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
put meta.loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put meta.nginx "$(nginx -v 2>&1 | sed 's/.*: //')"
put meta.registry "$(docker-registry --version 2>&1 | awk '{print $NF}')"
put meta.skopeo "$(skopeo --version | awk '{print $NF}')"
put meta.workdir "$WORK"

log "work dir $WORK ($([[ $QUICK == 1 ]] && echo quick || echo full) run, suites: ${SUITES[*]})"
export BENCH_CERTS=$WORK/certs    # read by render() for every template
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


# Saved before any suite runs: the proxy suite clears PORTCULLIS_OK when Portcullis does
# not start in upstream mode, which says nothing about the all-in-one mode.
PORTCULLIS_BIN_OK=$PORTCULLIS_OK

# ---------------------------------------------------------------- the suites
for suite in "${SUITES[@]}"; do
    # shellcheck source=/dev/null
    source "$HERE/suite-$suite.sh"
done
put meta.loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS_DIR"
# the gc suite keeps its own files, so a gc run leaves the other suites' latest.* alone
RESULTS_NAME=latest
[[ $SUITE == gc ]] && RESULTS_NAME=gc
[[ $SUITE == access ]] && RESULTS_NAME=access
[[ $SUITE == floor ]] && RESULTS_NAME=floor
cp "$RESULTS" "$RESULTS_DIR/$RESULTS_NAME.tsv"
# the access suite writes its own table (access.md) as it ends; the floor suite has its own report
if [[ $SUITE == floor ]]; then
    python3 "$HERE/floor_report.py" "$RESULTS" >"$RESULTS_DIR/$RESULTS_NAME.md"
elif [[ $SUITE != access ]]; then
    python3 "$HERE/report.py" "$RESULTS" >"$RESULTS_DIR/$RESULTS_NAME.md"
fi
cat "$RESULTS_DIR/$RESULTS_NAME.md"
log "table written to $RESULTS_DIR/$RESULTS_NAME.md (raw figures: $RESULTS_NAME.tsv)"
if [[ $PORTCULLIS_FAILED == 1 ]]; then
    warn "Portcullis was present but failed (see the messages above and the notes under the table)"
    exit 3
fi
exit 0
