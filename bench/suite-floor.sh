# bench/suite-floor.sh: the floor suite, sourced by bench/run.sh (not run on its own).
# Portcullis against the cheapest things that do a comparable job, on this machine, with
# the same certificate, in one run (see bench/README.md, "Floor suite"):
#  1. proxy floor: nginx with no auth at all (the recipe's config minus its auth_basic
#     lines) vs Portcullis in upstream mode with Basic auth (bcrypt cost 5, cached after the
#     first request), both in front of the same docker-registry: GET /v2/, wrk over TLS,
#     server CPU µs/request (and the registry's behind each);
#  2. static floor: nginx serving a 1 KiB file over TLS (no auth) vs Portcullis all-in-one
#     serving a 1 KiB blob with Basic auth: wrk (HTTP/1.1) and h2load (HTTP/2);
#  3. downloads vs peers: a DL_MIB (250) MiB blob over TLS with Basic auth (the bcrypt
#     user everywhere) through nginx (the recipe), HAProxy, Caddy and Portcullis in front
#     of the same registry, and from Portcullis all-in-one's own storage; curl, HTTP/1.1
#     and HTTP/2, FLOOR_DL_RUNS (DL_RUNS, 3; --quick: 2) interleaved runs;
#  4. with --profile (PERF=1): one extra wrk run per CPU case against Portcullis under
#     `perf record -e cpu-clock -g`, reports in $RESULTS_DIR/profile-*.txt. The CPU figures
#     always come from the runs without perf.
# Keys it writes start with "fl."; bench/floor_report.py turns them into floor.md.

if [[ $QUICK == 1 ]]; then
    FLOOR_RUNS=${FLOOR_RUNS:-1}
    FLOOR_SECONDS=${FLOOR_SECONDS:-3}
    FLOOR_H2_REQUESTS=${FLOOR_H2_REQUESTS:-5000}
    FLOOR_DL_RUNS=${FLOOR_DL_RUNS:-2}
else
    FLOOR_RUNS=${FLOOR_RUNS:-3}
    FLOOR_SECONDS=${FLOOR_SECONDS:-10}
    FLOOR_H2_REQUESTS=${FLOOR_H2_REQUESTS:-30000}
    FLOOR_DL_RUNS=${FLOOR_DL_RUNS:-$DL_RUNS}
fi
FLOOR_THREADS=${FLOOR_THREADS:-2}
FLOOR_CONNECTIONS=${FLOOR_CONNECTIONS:-16}
FLOOR_H2_CLIENTS=${FLOOR_H2_CLIENTS:-8}
FLOOR_H2_STREAMS=${FLOOR_H2_STREAMS:-10}
PROFILE=${PERF:-0}

log "== floor suite: nginx without auth / nginx static / HAProxy / Caddy vs Portcullis; $FLOOR_RUNS run(s) x ${FLOOR_SECONDS}s per CPU case$([[ $PROFILE == 1 ]] && echo ', with perf profiles')"
FD=$WORK/floor
mkdir -p "$FD"

put meta.fl.wrk "wrk -t$FLOOR_THREADS -c$FLOOR_CONNECTIONS -d${FLOOR_SECONDS}s, keep-alive HTTP/1.1 over TLS, $FLOOR_RUNS run(s) per contender, alternating"
put meta.fl.h2load "h2load -n $FLOOR_H2_REQUESTS -c $FLOOR_H2_CLIENTS -m $FLOOR_H2_STREAMS, $FLOOR_RUNS run(s) per contender, alternating"
put meta.fl.download "${DL_MIB} MiB random blob, curl --http1.1 / --http2 -o /dev/null, $FLOOR_DL_RUNS interleaved runs per target and protocol, Basic auth as $BCRYPT_USER (bcrypt cost 5) on every peer"
put meta.fl.profile "$([[ $PROFILE == 1 ]] && echo "on: one extra wrk run per CPU case against Portcullis under perf record -e cpu-clock -g (not counted in the CPU figures)" || echo "off (bench/run.sh --profile)")"
put meta.haproxy "$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"
put meta.caddy "$(caddy version 2>/dev/null | awk '{print $1}')"
put meta.wrk_version "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
put meta.h2load_version "$(h2load --version 2>/dev/null | awk '{print $NF}')"
put meta.curl "$(curl --version | awk 'NR == 1 {print $2 " (" $5 ")"}')"
[[ $PROFILE == 1 ]] && put meta.perf "$(perf version 2>/dev/null | awk '{print $NF}')"

# ---------------------------------------------------------------- contenders
# id -> what it is; "pc_*" are Portcullis (a failure there marks figures FAIL and the exit
# status 3; a failure anywhere else means the harness is broken: stop).
declare -A FL_LABEL=(
    [direct]="docker-registry direct (plain HTTP, no auth)"
    [ngx_noauth]="nginx, no auth (recipe minus auth_basic)"
    [ngx_static]="nginx, static 1 KiB file"
    [ngx]="nginx (recipe, auth_basic)"
    [haproxy]="HAProxy (userlist auth)"
    [caddy]="Caddy (basicauth)"
    [pc_up]="Portcullis upstream mode"
    [pc_aio]="Portcullis all-in-one"
)
declare -A FL_AUTH=([direct]=0 [ngx_noauth]=0 [ngx_static]=0 [ngx]=1 [haproxy]=1 [caddy]=1 [pc_up]=1 [pc_aio]=1)
read -r FL_REG_PORT FL_NGX_NOAUTH_PORT FL_NGX_STATIC_PORT FL_NGX_PORT FL_HAPROXY_PORT FL_CADDY_PORT FL_PC_UP_PORT FL_PC_AIO_PORT < <(free_ports 8)
declare -A FL_PORT=([direct]=$FL_REG_PORT [ngx_noauth]=$FL_NGX_NOAUTH_PORT [ngx_static]=$FL_NGX_STATIC_PORT [ngx]=$FL_NGX_PORT
    [haproxy]=$FL_HAPROXY_PORT [caddy]=$FL_CADDY_PORT [pc_up]=$FL_PC_UP_PORT [pc_aio]=$FL_PC_AIO_PORT)
declare -A FL_PID=()
declare -A FL_BROKEN=()   # "id case" -> reason (Portcullis only)
log "ports: registry $FL_REG_PORT, nginx no-auth $FL_NGX_NOAUTH_PORT, nginx static $FL_NGX_STATIC_PORT, nginx recipe $FL_NGX_PORT, haproxy $FL_HAPROXY_PORT, caddy $FL_CADDY_PORT, portcullis upstream $FL_PC_UP_PORT, all-in-one $FL_PC_AIO_PORT"

fl_pids() { # ID -> every pid whose CPU counts for it (nginx: master + workers)
    case $1 in
        ngx*) echo "${FL_PID[$1]} $(children_of "${FL_PID[$1]}")" ;;
        *) echo "${FL_PID[$1]}" ;;
    esac
}
fl_fail() { # ID CASE REASON
    [[ $1 == pc_* ]] || die "floor suite, ${FL_LABEL[$1]}, $2: $3"
    warn "PORTCULLIS (${FL_LABEL[$1]}), $2: $3"
    FL_BROKEN["$1 $2"]=$3
    PORTCULLIS_FAILED=1
    put "fl.$1.$2.error" "$3"
}
fl_ok() { # ID CASE: still worth measuring?
    [[ -n ${FL_PID[$1]:-} && -z ${FL_BROKEN["$1 $2"]:-} ]]
}
fl_started() { # ID PID LOGFILE: wait for its port; Portcullis may fail, the others may not
    FL_PID[$1]=$2; PIDS+=("$2")
    if wait_port "${FL_PORT[$1]}" "$2" "${FL_LABEL[$1]}" "$3" 30; then
        put "fl.$1.status" ok
        return 0
    fi
    [[ $1 == pc_* ]] || die "floor suite: ${FL_LABEL[$1]} did not start: $WAIT_WHY"
    PORTCULLIS_FAILED=1
    put "fl.$1.status" "n/a: $WAIT_WHY"
    stop_pid "$2"; forget_pid "$2"; FL_PID[$1]=""
    return 1
}

# ---------------------------------------------------------------- the shared upstream registry
export BENCH_CERTS=$CERTS
cp "$HTPASSWD" "$FD/htpasswd"
mkdir -p "$FD/registry-data"
BENCH_DIR=$FD BENCH_REGISTRY_PORT=$FL_REG_PORT render "$HERE/templates/registry.yml.in" "$FD/registry.yml"
docker-registry serve "$FD/registry.yml" >"$FD/registry.log" 2>&1 9>&- &
fl_started direct $! "$FD/registry.log"
FL_REG=http://127.0.0.1:$FL_REG_PORT
code=$(curl -sS -o /dev/null -w '%{http_code}' "$FL_REG/v2/") || true
[[ $code == 200 ]] || die "floor suite: the registry answered GET /v2/ with HTTP $code (want 200)"

# ---------------------------------------------------------------- the three nginx instances
if [[ $(id -u) == 0 ]]; then BENCH_USER_LINE="user root;"; else BENCH_USER_LINE="# (not root: workers keep our user)"; fi
export BENCH_USER_LINE
fl_nginx() { # ID TEMPLATE [FILTER]: render into $FD/ID/nginx/nginx.conf, check, start
    local id=$1 d=$FD/$1
    mkdir -p "$d/nginx"/{client_body,proxy,fastcgi,uwsgi,scgi}
    cp "$HTPASSWD" "$d/htpasswd"
    BENCH_DIR=$d BENCH_REGISTRY_PORT=$FL_REG_PORT BENCH_NGINX_PORT=${FL_PORT[$id]} render "$2" "$d/nginx/nginx.conf"
    if [[ ${3:-} == noauth ]]; then
        # the recipe, minus its two auth_basic directives (and the comment naming them)
        grep -v 'auth_basic' "$d/nginx/nginx.conf" >"$d/nginx/nginx.conf.tmp"
        mv "$d/nginx/nginx.conf.tmp" "$d/nginx/nginx.conf"
    fi
    nginx -t -q -p "$d/nginx/" -c "$d/nginx/nginx.conf" -e "$d/nginx/error.log" >"$d/nginx/t.log" 2>&1 \
        || { cat "$d/nginx/t.log" "$d/nginx/error.log" >&9 2>/dev/null; die "floor suite: nginx -t rejected $d/nginx/nginx.conf"; }
    nginx -p "$d/nginx/" -c "$d/nginx/nginx.conf" -e "$d/nginx/error.log" >"$d/nginx/stdout.log" 2>&1 9>&- &
    fl_started "$id" $! "$d/nginx/error.log"
}
fl_nginx ngx "$HERE/templates/nginx.conf.in"
fl_nginx ngx_noauth "$HERE/templates/nginx.conf.in" noauth
fl_nginx ngx_static "$HERE/templates/nginx-static.conf.in"

# ---------------------------------------------------------------- HAProxy and Caddy
BCRYPT_HASH=$(awk -F: -v u="$BCRYPT_USER" '$1 == u {print $2}' "$HTPASSWD")
mkdir -p "$FD/haproxy" "$FD/caddy/data" "$FD/caddy/xdg"
cat "$CERTS/server.crt" "$CERTS/server.key" >"$FD/haproxy/server.pem"
chmod 600 "$FD/haproxy/server.pem"
BENCH_DIR=$FD BENCH_REGISTRY_PORT=$FL_REG_PORT BENCH_HAPROXY_PORT=$FL_HAPROXY_PORT BENCH_USER=$BCRYPT_USER BENCH_HASH=$BCRYPT_HASH \
    render "$HERE/templates/haproxy.cfg.in" "$FD/haproxy/haproxy.cfg"
haproxy -c -q -f "$FD/haproxy/haproxy.cfg" >"$FD/haproxy/check.log" 2>&1 \
    || { cat "$FD/haproxy/check.log" >&9; die "floor suite: haproxy -c rejected $FD/haproxy/haproxy.cfg"; }
haproxy -db -f "$FD/haproxy/haproxy.cfg" >"$FD/haproxy/haproxy.log" 2>&1 9>&- &
fl_started haproxy $! "$FD/haproxy/haproxy.log"
BENCH_DIR=$FD BENCH_REGISTRY_PORT=$FL_REG_PORT BENCH_CADDY_PORT=$FL_CADDY_PORT BENCH_USER=$BCRYPT_USER BENCH_HASH=$BCRYPT_HASH \
    render "$HERE/templates/Caddyfile.in" "$FD/caddy/Caddyfile"
# Caddy keeps its state under $HOME/XDG dirs: point them all into the temp dir.
HOME=$FD/caddy/xdg XDG_DATA_HOME=$FD/caddy/xdg XDG_CONFIG_HOME=$FD/caddy/xdg \
    caddy run --adapter caddyfile --config "$FD/caddy/Caddyfile" >"$FD/caddy/caddy.log" 2>&1 9>&- &
fl_started caddy $! "$FD/caddy/caddy.log"

# ---------------------------------------------------------------- the two Portcullis instances
if [[ $PORTCULLIS_BIN_OK == 1 ]]; then
    # Run a private copy: if the binary is rebuilt in place during the run, perf could no
    # longer resolve the symbols of the running one (it shows up as "(deleted)").
    cp "$PORTCULLIS" "$FD/portcullis"
    FL_BIN=$FD/portcullis
    put meta.fl.portcullis_sha256 "$(sha256sum "$FL_BIN" | cut -c1-16)"
    BENCH_DIR=$FD BENCH_REGISTRY_PORT=$FL_REG_PORT BENCH_PORTCULLIS_PORT=$FL_PC_UP_PORT \
        render "$HERE/templates/proxy.toml.in" "$FD/upstream.toml"
    "$FL_BIN" serve -c "$FD/upstream.toml" >"$FD/portcullis-upstream.log" 2>&1 9>&- &
    fl_started pc_up $! "$FD/portcullis-upstream.log" || true
    mkdir -p "$FD/aio"; cp "$HTPASSWD" "$FD/aio/htpasswd"
    BENCH_RS=$FD/aio BENCH_AIO_PORT=$FL_PC_AIO_PORT render "$HERE/templates/allinone.toml.in" "$FD/aio.toml"
    "$FL_BIN" serve -c "$FD/aio.toml" >"$FD/portcullis-aio.log" 2>&1 9>&- &
    fl_started pc_aio $! "$FD/portcullis-aio.log" || true
else
    put fl.pc_up.status "n/a: $PORTCULLIS_WHY"; put fl.pc_aio.status "n/a: $PORTCULLIS_WHY"
fi
log "up: registry ${FL_PID[direct]}, nginx ${FL_PID[ngx]} / no-auth ${FL_PID[ngx_noauth]} / static ${FL_PID[ngx_static]}, haproxy ${FL_PID[haproxy]}, caddy ${FL_PID[caddy]}, portcullis upstream ${FL_PID[pc_up]:-n/a}, all-in-one ${FL_PID[pc_aio]:-n/a}"

# ---------------------------------------------------------------- seed the blobs
FL_AUTH_HEADER="Authorization: Basic $(basic "$BCRYPT_USER")"
fl_push() { # BASE REPO FILE AUTH(0|1) -> digest on stdout, or "" + reason on fd 9
    local base=$1 repo=$2 file=$3 digest loc sep code a=()
    [[ $4 == 1 ]] && a=(--cacert "$CA" -H "$FL_AUTH_HEADER")
    digest=sha256:$(sha256sum "$file" | cut -c1-64)
    loc=$(curl -sS "${a[@]}" -D - -o /dev/null -X POST "$base/v2/$repo/blobs/uploads/" \
        | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r') || true
    [[ -n $loc ]] || { warn "no upload Location from $base for $repo"; return 1; }
    [[ $loc == /* ]] && loc=$base$loc
    sep='?'; [[ $loc == *\?* ]] && sep='&'
    code=$(curl -sS "${a[@]}" -o /dev/null -w '%{http_code}' -T "$file" -H 'Content-Type: application/octet-stream' \
        --max-time 600 "$loc${sep}digest=$digest") || true
    [[ $code == 201 ]] || { warn "pushing $(basename "$file") to $base: PUT answered HTTP $code (want 201)"; return 1; }
    echo "$digest"
}
head -c 1024 /dev/urandom >"$FD/small.bin"
head -c "$((DL_MIB * 1024 * 1024))" /dev/urandom >"$FD/big.bin"
FL_BIG_SIZE=$(stat -c %s "$FD/big.bin")
FL_BIG_DIGEST=$(fl_push "$FL_REG" bench/big "$FD/big.bin" 0) || die "floor suite: could not seed the registry"
FL_SMALL_DIGEST=sha256:$(sha256sum "$FD/small.bin" | cut -c1-64)
FL_BIG_PATH=/v2/bench/big/blobs/$FL_BIG_DIGEST
FL_SMALL_PATH=/v2/bench/small/blobs/$FL_SMALL_DIGEST
# nginx's static file sits at the blob's path
mkdir -p "$FD/ngx_static/static/v2/bench/small/blobs"
cp "$FD/small.bin" "$FD/ngx_static/static$FL_SMALL_PATH"
if fl_ok pc_aio seed; then
    d1=$(fl_push "https://127.0.0.1:$FL_PC_AIO_PORT" bench/small "$FD/small.bin" 1) \
        && d2=$(fl_push "https://127.0.0.1:$FL_PC_AIO_PORT" bench/big "$FD/big.bin" 1) \
        && [[ $d1 == "$FL_SMALL_DIGEST" && $d2 == "$FL_BIG_DIGEST" ]] \
        || for c in static_h1 static_h2 dl; do
            fl_fail pc_aio "$c" "could not push the 1 KiB and ${DL_MIB} MiB blobs into the all-in-one's storage"
        done
fi
rm -f "$FD/big.bin"
log "seeded: ${DL_MIB} MiB blob $FL_BIG_DIGEST (registry + all-in-one), 1 KiB blob $FL_SMALL_DIGEST (all-in-one + nginx static file)"

# ---------------------------------------------------------------- checks before any load
# fl_check ID CASE PATH HV [EXPECTED-BODY]: without credentials 401 (200 where auth is
# off), with them 200, the protocol asked for, and the bytes when a body is given.
fl_check() {
    local id=$1 case=$2 path=$3 hv=$4 want_body=${5:-} url out opt=--http1.1 want_anon=401 body=/dev/null
    fl_ok "$id" "$case" || return 0
    [[ $hv == 2 ]] && opt=--http2
    [[ ${FL_AUTH[$id]} == 1 ]] || want_anon=200
    url=https://127.0.0.1:${FL_PORT[$id]}$path
    out=$(curl -sS $opt --cacert "$CA" -o /dev/null -w '%{http_code} %{http_version}' --max-time 120 "$url" 2>&1) || true
    [[ $out == "$want_anon $hv" ]] || { fl_fail "$id" "$case" "without credentials GET $path answered '$out' (want '$want_anon $hv')"; return 0; }
    if [[ ${FL_AUTH[$id]} == 1 ]]; then
        out=$(curl -sS $opt --cacert "$CA" -u "$BCRYPT_USER:wrong-$BCRYPT_PASS" -o /dev/null -w '%{http_code}' --max-time 120 "$url" 2>&1) || true
        [[ $out == 401 ]] || { fl_fail "$id" "$case" "a wrong password on GET $path answered '$out' (want 401)"; return 0; }
    fi
    [[ -n $want_body ]] && body=$FD/check.body
    out=$(curl -sS $opt --cacert "$CA" -H "$FL_AUTH_HEADER" -o "$body" -w '%{http_code} %{http_version}' --max-time 120 "$url" 2>&1) || true
    [[ $out == "200 $hv" ]] || { fl_fail "$id" "$case" "with credentials GET $path answered '$out' (want '200 $hv')"; return 0; }
    if [[ -n $want_body ]] && ! cmp -s "$body" "$want_body"; then
        fl_fail "$id" "$case" "GET $path came back with different bytes"
    fi
    return 0
}
for hv in 1.1 2; do
    h=h1; [[ $hv == 2 ]] && h=h2
    for id in ngx_noauth pc_up; do fl_check "$id" "proxy_$h" /v2/ "$hv"; done
    for id in ngx_static pc_aio; do fl_check "$id" "static_$h" "$FL_SMALL_PATH" "$hv" "$FD/small.bin"; done
done
# the download peers: the anonymous 401 and the wrong password here; status, size and
# protocol of every download are checked as it runs
for id in ngx haproxy caddy pc_up pc_aio; do
    fl_ok "$id" dl || continue
    out=$(curl -sS --cacert "$CA" -o /dev/null -w '%{http_code}' --max-time 120 "https://127.0.0.1:${FL_PORT[$id]}$FL_BIG_PATH" 2>&1) || true
    [[ $out == 401 ]] || fl_fail "$id" dl "without credentials GET of the ${DL_MIB} MiB blob answered '$out' (want 401)"
    fl_ok "$id" dl || continue
    out=$(curl -sS --cacert "$CA" -u "$BCRYPT_USER:wrong-$BCRYPT_PASS" -o /dev/null -w '%{http_code}' --max-time 120 "https://127.0.0.1:${FL_PORT[$id]}$FL_BIG_PATH" 2>&1) || true
    [[ $out == 401 ]] || fl_fail "$id" dl "with a wrong password GET of the ${DL_MIB} MiB blob answered '$out' (want 401)"
done
for id in ngx_noauth pc_up ngx_static pc_aio ngx haproxy caddy; do
    [[ -n ${FL_PID[$id]:-} ]] || continue
    put "fl.$id.tls" "$(openssl s_client -brief -connect "127.0.0.1:${FL_PORT[$id]}" -servername localhost -CAfile "$CA" </dev/null 2>&1 \
        | awk -F': *' '/^Protocol version/{p=$2} /^Ciphersuite/{c=$2} END{print p ", " c}')"
done
log "checks done (401 without credentials and with a wrong password where auth is on, 200 with them, HTTP/1.1 and HTTP/2, the 1 KiB bytes)"

# ---------------------------------------------------------------- CPU per request
# fl_load TOOL CASE ID RUN [PERF-NAME]: one bounded load run; server (and, for the proxy
# case, registry) CPU ticks around it. Figures go to $FD/<what>.<case>.<id> (one line per
# run) unless PERF-NAME is given (a profiled run: its figure is kept apart).
fl_load() {
    local tool=$1 case=$2 id=$3 run=$4 pname=${5:-} path out pids t0 r0 t1 r1 n rps perf_pid="" s2xx total
    fl_ok "$id" "$case" || return 0
    path=/v2/; [[ $case == static_* ]] && path=$FL_SMALL_PATH
    out=$FD/$tool.$case.$id.$run${pname:+.perf}.txt
    pids=$(fl_pids "$id")
    if [[ -n $pname ]]; then
        perf record -e cpu-clock -g -p "${FL_PID[$id]}" -o "$FD/perf.$pname.data" >"$FD/perf.$pname.log" 2>&1 9>&- &
        perf_pid=$!; PIDS+=("$perf_pid")
        sleep 1
        alive "$perf_pid" || { cat "$FD/perf.$pname.log" >&9; warn "perf record did not start: no profile $pname"; forget_pid "$perf_pid"; return 0; }
    fi
    t0=$(ticks $pids) && r0=$(ticks "${FL_PID[direct]}") || { fl_fail "$id" "$case" "a server process is gone (crashed?)"; return 0; }
    if [[ $tool == wrk ]]; then
        bounded timeout $((FLOOR_SECONDS + 60)) wrk -t"$FLOOR_THREADS" -c"$FLOOR_CONNECTIONS" -d"${FLOOR_SECONDS}s" \
            -H "$FL_AUTH_HEADER" "https://127.0.0.1:${FL_PORT[$id]}$path" >"$out" 2>&1 \
            || { cat "$out" >&9; fl_fail "$id" "$case" "wrk failed"; return 0; }
    else
        bounded timeout 600 h2load -n "$FLOOR_H2_REQUESTS" -c "$FLOOR_H2_CLIENTS" -m "$FLOOR_H2_STREAMS" \
            -H "authorization: Basic $(basic "$BCRYPT_USER")" "https://127.0.0.1:${FL_PORT[$id]}$path" >"$out" 2>&1 \
            || { cat "$out" >&9; fl_fail "$id" "$case" "h2load failed or timed out"; return 0; }
    fi
    t1=$(ticks $pids) && r1=$(ticks "${FL_PID[direct]}") || { fl_fail "$id" "$case" "a server process exited during the load run (crashed?)"; return 0; }
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        forget_pid "$perf_pid"
    fi
    if [[ $tool == wrk ]]; then
        n=$(awk '/ requests in /{print $1}' "$out")
        rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
        s2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' "$out")
        [[ -n $n && $n -gt 0 ]] || { cat "$out" >&9; fl_fail "$id" "$case" "wrk completed no requests"; return 0; }
        [[ -z $s2xx ]] || { fl_fail "$id" "$case" "wrk saw $s2xx non-2xx responses out of $n"; return 0; }
        s2xx=$(awk '/Socket errors:/{sub(/.*Socket errors: /, ""); print}' "$out")
        [[ -z $s2xx ]] || put "fl.$case.$id.socket_errors" "$s2xx"
    else
        grep -q '^Application protocol: h2$' "$out" || { cat "$out" >&9; fl_fail "$id" "$case" "h2load did not negotiate h2"; return 0; }
        IFS='|' read -r total n s2xx _ rps < <(h2load_counts "$out")
        if [[ -z $n || $n == 0 || $s2xx != "$n" || $n != "$total" ]]; then
            cat "$out" >&9; fl_fail "$id" "$case" "h2load: $total requests, ${n:-0} succeeded, ${s2xx:-0} with 2xx"; return 0
        fi
    fi
    local cpu reg
    cpu=$(calc "($t1 - $t0) * 1e6 / $HZ / $n"); reg=$(calc "($r1 - $r0) * 1e6 / $HZ / $n")
    if [[ -n $pname ]]; then
        put "fl.$case.$id.profiled_cpu_us" "$cpu"
        log "  $case ${FL_LABEL[$id]} under perf: $n requests, $(calc "round($cpu, 1)") µs/req"
        fl_profile_report "$pname" "$case" "$id" "$n" "$cpu"
        return 0
    fi
    echo "$cpu" >>"$FD/cpu.$case.$id"; echo "$reg" >>"$FD/reg.$case.$id"; echo "$rps" >>"$FD/rps.$case.$id"
    log "  $case run $run ${FL_LABEL[$id]}: $n requests, $rps req/s, server $(calc "round($cpu, 1)") µs/req$([[ $case == proxy_* ]] && echo ", registry $(calc "round($reg, 1)") µs/req")"
}

fl_profile_report() { # NAME CASE ID REQUESTS CPU_US: perf report -> $RESULTS_DIR/profile-NAME.txt
    local data=$FD/perf.$1.data f=$RESULTS_DIR/profile-$1.txt
    [[ -s $data ]] || { warn "perf wrote no data for $1"; return 0; }
    mkdir -p "$RESULTS_DIR"
    {
        echo "# Portcullis profile: ${FL_LABEL[$3]}, case $2 (bench/run.sh --suite floor --profile)"
        echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $PORTCULLIS"
        echo "# perf record -e cpu-clock -g -p PID during one wrk -t$FLOOR_THREADS -c$FLOOR_CONNECTIONS -d${FLOOR_SECONDS}s run: $4 requests, $(calc "round($5, 1)") µs/req server CPU under perf"
        echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        echo "## perf report --no-children --sort symbol (self time, top 40)"
        # awk, not head: reading to the end spares perf a SIGPIPE (pipefail); the sub()
        # drops perf's empty IPC columns ("-  -")
        timeout 300 perf report -i "$data" --stdio --no-children --sort symbol -g none 2>/dev/null \
            | awk '!/^#/ && NF && n < 40 { sub(/([[:space:]]+-)*[[:space:]]*$/, ""); print; n++ }' || true
        echo
        echo "## perf report --no-children --sort dso"
        timeout 300 perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null \
            | awk '!/^#/ && NF && n < 20 { sub(/([[:space:]]+-)*[[:space:]]*$/, ""); print; n++ }' || true
        echo
        echo "## perf report --children --sort symbol (inclusive time: children, self; top 30)"
        timeout 300 perf report -i "$data" --stdio --children --sort symbol -g none 2>/dev/null \
            | awk '!/^#/ && NF && n < 30 { sub(/([[:space:]]+-)*[[:space:]]*$/, ""); print; n++ }' || true
    } >"$f"
    log "  profile written to $f"
}

log "CPU per request: proxy floor (GET /v2/) and static floor (1 KiB), wrk HTTP/1.1, then h2load HTTP/2 for the static floor"
for ((r = 1; r <= FLOOR_RUNS; r++)); do
    # alternate who goes first, so a burst of outside load does not always hit the same one
    if ((r % 2)); then a=ngx_noauth b=pc_up s=ngx_static t=pc_aio; else a=pc_up b=ngx_noauth s=pc_aio t=ngx_static; fi
    fl_load wrk proxy_h1 "$a" "$r"; fl_load wrk proxy_h1 "$b" "$r"
    fl_load wrk static_h1 "$s" "$r"; fl_load wrk static_h1 "$t" "$r"
done
for ((r = 1; r <= FLOOR_RUNS; r++)); do
    if ((r % 2)); then s=ngx_static t=pc_aio; else s=pc_aio t=ngx_static; fi
    fl_load h2 static_h2 "$s" "$r"; fl_load h2 static_h2 "$t" "$r"
done
if [[ $PROFILE == 1 ]]; then
    log "profiling Portcullis (one extra wrk run per case, not counted above)"
    fl_load wrk proxy_h1 pc_up p proxy-v2
    fl_load wrk static_h1 pc_aio p allinone-blob
fi
for f in "$FD"/cpu.* "$FD"/reg.* "$FD"/rps.*; do
    [[ -s $f ]] || continue
    b=${f##*/}; what=${b%%.*}; rest=${b#*.}   # what.case.id
    put "fl.${rest%%.*}.${rest#*.}.${what}_runs" "$(paste -sd' ' "$f")"
done

# ---------------------------------------------------------------- downloads
FL_DL_TARGETS=(direct ngx haproxy caddy pc_up pc_aio)
fl_dl() { # ID HV RUN: one download of the big blob; MiB/s and the server's CPU seconds
    local id=$1 hv=$2 h=h1 opt=--http1.1 url out code speed size ver pids t0 t1 a=()
    [[ $hv == 2 ]] && { h=h2; opt=--http2; }
    fl_ok "$id" dl || return 0
    if [[ $id == direct ]]; then
        url=$FL_REG$FL_BIG_PATH
    else
        url=https://127.0.0.1:${FL_PORT[$id]}$FL_BIG_PATH; a=(--cacert "$CA" -u "$BCRYPT_USER:$BCRYPT_PASS")
    fi
    pids=$(fl_pids "$id")
    t0=$(ticks $pids) || { fl_fail "$id" dl "a server process is gone (crashed?)"; return 0; }
    out=$(bounded timeout 330 curl -sS $opt "${a[@]}" -o /dev/null -w '%{http_code} %{speed_download} %{size_download} %{http_version}' \
        --max-time 300 "$url" 2>&1) || true
    t1=$(ticks $pids) || { fl_fail "$id" dl "a server process exited during a download (crashed?)"; return 0; }
    read -r code speed size ver <<<"$out"
    if [[ $code != 200 || $size != "$FL_BIG_SIZE" || $ver != "$hv" ]]; then
        fl_fail "$id" dl "$h download answered '$out' (want 200, $FL_BIG_SIZE bytes, HTTP/$hv)"; return 0
    fi
    calc "$speed / 1048576" >>"$FD/dl.$id.$h"
    calc "($t1 - $t0) / $HZ" >>"$FD/dlcpu.$id.$h"
}
log "downloading the ${DL_MIB} MiB blob, $FLOOR_DL_RUNS interleaved run(s) per target, HTTP/1.1 and HTTP/2"
for ((r = 1; r <= FLOOR_DL_RUNS; r++)); do
    # every other round in reverse order, so no target always follows the same one
    order=("${FL_DL_TARGETS[@]}")
    ((r % 2)) || order=($(printf '%s\n' "${FL_DL_TARGETS[@]}" | tac))
    for hv in 1.1 2; do
        for id in "${order[@]}"; do
            [[ $id == direct && $hv == 2 ]] && continue   # plain HTTP: no h2 without prior knowledge
            fl_dl "$id" "$hv" "$r"
        done
    done
done
for id in "${FL_DL_TARGETS[@]}"; do
    for h in h1 h2; do
        [[ -s $FD/dl.$id.$h ]] || continue
        put "fl.dl_$h.$id.mibs_runs" "$(paste -sd' ' "$FD/dl.$id.$h")"
        put "fl.dl_$h.$id.cpu_s_runs" "$(paste -sd' ' "$FD/dlcpu.$id.$h")"
        log "  $h ${FL_LABEL[$id]}: $(xargs printf '%.0f ' <"$FD/dl.$id.$h")MiB/s"
    done
done

# ---------------------------------------------------------------- wrap up
for id in pc_up pc_aio; do
    [[ -n ${FL_PID[$id]:-} ]] || continue
    if ! alive "${FL_PID[$id]}"; then
        PORTCULLIS_FAILED=1; warn "${FL_LABEL[$id]} exited during the run; last lines of its log:"
        tail -n 20 "$FD/portcullis-${id#pc_}.log" >&9 || true
    fi
done
for id in ngx_noauth ngx_static ngx haproxy caddy pc_up pc_aio direct; do
    [[ -n ${FL_PID[$id]:-} ]] || continue
    p=0
    for pid in $(fl_pids "$id"); do k=$(hwm_kib "$pid" 2>/dev/null) && p=$((p + k)); done
    put "fl.$id.rss_kib" "$p"
done
for id in ngx_noauth ngx_static ngx haproxy caddy pc_up pc_aio direct; do
    p=${FL_PID[$id]:-}
    [[ -n $p ]] || continue
    stop_pid "$p"; forget_pid "$p"
done
[[ $KEEP == 1 ]] || rm -rf "$FD/registry-data" "$FD/aio/portcullis-data"
log "floor suite done"
