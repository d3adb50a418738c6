# bench/suite-proxy.sh: the proxy suite, sourced by bench/run.sh (not run on its own).
# nginx (the recipe) and Portcullis in upstream mode, both in front of the same Debian
# docker-registry. Uses run.sh's helpers, certificates ($CERTS, $CA, $SKOPEO_CERTS),
# htpasswd ($HTPASSWD, bench-bcrypt + bench-apr1) and $RESULTS. See bench/README.md.

log "== proxy suite: nginx + registry vs Portcullis + registry (same upstream)"
put meta.wrk "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s"
put meta.h2load "h2load -n $H2_REQUESTS -c $H2_CLIENTS -m $H2_STREAMS"
put meta.download "${DL_MIB} MiB blob, curl --http1.1, $DL_RUNS runs"
put meta.push "layers of $LAYERS_MIB MiB, $PUSH_RUNS run(s)"

read -r REGISTRY_PORT NGINX_PORT PORTCULLIS_PORT < <(free_ports 3)
log "ports: registry $REGISTRY_PORT, nginx $NGINX_PORT, portcullis $PORTCULLIS_PORT"

# Everything the templates need, exported for render().
export BENCH_DIR=$WORK BENCH_REGISTRY_PORT=$REGISTRY_PORT \
       BENCH_NGINX_PORT=$NGINX_PORT BENCH_PORTCULLIS_PORT=$PORTCULLIS_PORT

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
    IFS='|' read -r total ok s2xx _ rps < <(h2load_counts "$out")
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

# ---------------------------------------------------------------- stop this suite's processes
# so that the next suite runs on a quiet machine; its registry data (GBs of pushes) goes too
# (unless --keep).
for p in "$PORTCULLIS_PID" "$NGINX_PID" "$REGISTRY_PID"; do
    [[ -n $p ]] && { stop_pid "$p"; forget_pid "$p"; }
done
[[ $KEEP == 1 ]] || rm -rf "$WORK/registry-data"
log "proxy suite done"
