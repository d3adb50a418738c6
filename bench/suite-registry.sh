# bench/suite-registry.sh: the registry (all-in-one) suite, sourced by bench/run.sh (not
# run on its own). Three complete registries, each behind TLS + Basic auth with the same
# certificate and the same htpasswd file, measured the same way one after the other:
#
#   aio     Portcullis all-in-one: `portcullis serve` with [registry] (one process)
#   native  the anchor: Debian docker-registry alone, its own TLS + htpasswd
#   nginx   nginx (the recipe's config) in front of a plain-HTTP docker-registry;
#           CPU and RSS are nginx (master + workers) + that registry, summed
#
# Uses run.sh's helpers, certificates ($CERTS, $CA, $SKOPEO_CERTS), htpasswd ($HTPASSWD:
# only its bcrypt user is copied) and $RESULTS. Keys it writes start with "rs.".
# See bench/README.md for every figure.

log "== registry suite: Portcullis all-in-one vs docker-registry (TLS + htpasswd) vs nginx + docker-registry"
put meta.rs.h1 "HEAD: bench/h1load.py -c$WRK_CONNECTIONS -d${RS_SECONDS}s; GET: wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${RS_SECONDS}s"
put meta.rs.h2 "h2load -c $RS_H2_CLIENTS -m $RS_H2_STREAMS -D ${RS_SECONDS}s"
put meta.rs.push "layers of $LAYERS_MIB MiB, $RS_RUNS run(s)"
put meta.rs.rss "h2load -c $RSS_CLIENTS -m $RSS_STREAMS -n $RSS_REQUESTS"
put meta.rs.rss_clients "$RSS_CLIENTS"
put meta.rs.rss_streams "$RSS_STREAMS"
[[ ${PERF:-0} == 1 ]] && put meta.rs.perf "PERF=1: portcullis was sampled with perf record during its CPU runs (this adds a little to its CPU figures)"

RS=$WORK/rs
mkdir -p "$RS/nginx"/{client_body,proxy,fastcgi,uwsgi,scgi} "$RS/native-data" "$RS/registry-data" "$RS/portcullis-data"
read -r RS_AIO_PORT RS_NATIVE_PORT RS_NGINX_PORT RS_UP_PORT < <(free_ports 4)
log "ports: portcullis all-in-one $RS_AIO_PORT, docker-registry TLS $RS_NATIVE_PORT, nginx $RS_NGINX_PORT -> docker-registry $RS_UP_PORT"

# One htpasswd file for all three stacks, with the bcrypt cost-5 user only: distribution's
# htpasswd auth accepts nothing but bcrypt.
grep "^$BCRYPT_USER:" "$HTPASSWD" >"$RS/htpasswd"
RS_USER=$BCRYPT_USER
RS_PASS=${PASS[$BCRYPT_USER]}
RS_AUTH=$(basic "$RS_USER")
RS_ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

export BENCH_RS=$RS BENCH_AIO_PORT=$RS_AIO_PORT BENCH_NATIVE_PORT=$RS_NATIVE_PORT
if [[ $(id -u) == 0 ]]; then BENCH_USER_LINE="user root;"; else BENCH_USER_LINE="# (not root: workers keep our user)"; fi
export BENCH_USER_LINE
render "$HERE/templates/registry-native.yml.in" "$RS/native.yml"
BENCH_DIR=$RS BENCH_REGISTRY_PORT=$RS_UP_PORT render "$HERE/templates/registry.yml.in" "$RS/upstream.yml"
BENCH_DIR=$RS BENCH_REGISTRY_PORT=$RS_UP_PORT BENCH_NGINX_PORT=$RS_NGINX_PORT \
    render "$HERE/templates/nginx.conf.in" "$RS/nginx/nginx.conf"
nginx -t -q -p "$RS/nginx/" -c "$RS/nginx/nginx.conf" -e "$RS/nginx/error.log" >"$RS/nginx/t.log" 2>&1 \
    || { cat "$RS/nginx/t.log" "$RS/nginx/error.log" >&9 2>/dev/null; die "nginx -t rejected the generated config"; }
[[ $PORTCULLIS_BIN_OK == 1 ]] && render "$HERE/templates/allinone.toml.in" "$RS/proxy.toml"

# ---------------------------------------------------------------- stacks
RS_AIO_PID="" RS_NATIVE_PID="" RS_NGINX_PID="" RS_UP_PID=""
RS_AIO_OK=$PORTCULLIS_BIN_OK
declare -A RS_BROKEN=()   # case -> reason (only Portcullis can be marked broken; an anchor failing stops the run)

rs_label() { case $1 in aio) echo "portcullis all-in-one" ;; native) echo "docker-registry (TLS + htpasswd)" ;; nginx) echo "nginx + docker-registry" ;; esac; }
rs_port()  { case $1 in aio) echo "$RS_AIO_PORT" ;; native) echo "$RS_NATIVE_PORT" ;; nginx) echo "$RS_NGINX_PORT" ;; esac; }
rs_url()   { echo "https://127.0.0.1:$(rs_port "$1")$2"; }
rs_parts() { case $1 in aio) echo portcullis ;; native) echo registry ;; nginx) echo "nginx registry" ;; esac; }
rs_part_pids() { # STACK PART -> the pids whose CPU and RSS count for that part
    case $1/$2 in
        aio/portcullis) echo "$RS_AIO_PID" ;;
        native/registry) echo "$RS_NATIVE_PID" ;;
        nginx/nginx) echo "$RS_NGINX_PID" $(children_of "$RS_NGINX_PID") ;;
        nginx/registry) echo "$RS_UP_PID" ;;
    esac
}

rs_fail() { # STACK CASE REASON: an anchor failing is fatal; Portcullis failing marks the case FAIL
    [[ $1 == aio ]] || die "$(rs_label "$1"), $2: $3"
    warn "PORTCULLIS all-in-one, $2: $3"
    RS_BROKEN[$2]=$3
    PORTCULLIS_FAILED=1
    put "rs.aio.$2.error" "$3"
}
rs_ok() { # STACK CASE: should this case be measured on this stack?
    [[ $1 != aio ]] && return 0
    [[ $RS_AIO_OK == 1 && -z ${RS_BROKEN[$2]:-} ]]
}

rs_start() { # STACK: start its processes and wait for their ports; 1 + WAIT_WHY on failure
    case $1 in
        aio)
            "$PORTCULLIS" serve -c "$RS/proxy.toml" >>"$RS/portcullis.log" 2>&1 9>&- &
            RS_AIO_PID=$!; PIDS+=("$RS_AIO_PID")
            wait_port "$RS_AIO_PORT" "$RS_AIO_PID" "portcullis all-in-one" "$RS/portcullis.log" 30 ;;
        native)
            docker-registry serve "$RS/native.yml" >>"$RS/native.log" 2>&1 9>&- &
            RS_NATIVE_PID=$!; PIDS+=("$RS_NATIVE_PID")
            wait_port "$RS_NATIVE_PORT" "$RS_NATIVE_PID" "docker-registry (TLS)" "$RS/native.log" 30 ;;
        nginx)
            docker-registry serve "$RS/upstream.yml" >>"$RS/upstream.log" 2>&1 9>&- &
            RS_UP_PID=$!; PIDS+=("$RS_UP_PID")
            wait_port "$RS_UP_PORT" "$RS_UP_PID" "docker-registry behind nginx" "$RS/upstream.log" 30 || return 1
            nginx -p "$RS/nginx/" -c "$RS/nginx/nginx.conf" -e "$RS/nginx/error.log" >>"$RS/nginx/stdout.log" 2>&1 9>&- &
            RS_NGINX_PID=$!; PIDS+=("$RS_NGINX_PID")
            wait_port "$RS_NGINX_PORT" "$RS_NGINX_PID" nginx "$RS/nginx/error.log" 30 ;;
    esac
}
rs_stop() { # STACK: stop its processes (nginx before its registry) and forget them
    local p
    case $1 in
        aio) p=$RS_AIO_PID; RS_AIO_PID="" ;;
        native) p=$RS_NATIVE_PID; RS_NATIVE_PID="" ;;
        nginx) p="$RS_NGINX_PID $RS_UP_PID"; RS_NGINX_PID="" RS_UP_PID="" ;;
    esac
    for p in $p; do stop_pid "$p"; forget_pid "$p"; done
}
rs_stacks() { # the stacks still in the race, in the order they are measured
    echo native nginx
    [[ $RS_AIO_OK == 1 ]] && echo aio
    return 0
}
rs_restart_all() { # WHY: fresh processes (VmHWM starts again from zero); data dirs are kept
    local s
    for s in $(rs_stacks); do rs_stop "$s"; done
    for s in $(rs_stacks); do
        rs_start "$s" && continue
        [[ $s == aio ]] || die "$(rs_label "$s") did not restart ($1): $WAIT_WHY"
        rs_fail aio restart "did not restart ($1): $WAIT_WHY"
        rs_stop aio
        RS_AIO_OK=0
    done
    log "restarted every stack ($1): registry TLS $RS_NATIVE_PID, nginx $RS_NGINX_PID (workers $(children_of "$RS_NGINX_PID" | xargs)) + registry $RS_UP_PID${RS_AIO_PID:+, portcullis $RS_AIO_PID}"
}

rs_start native || die "docker-registry with TLS + htpasswd did not start: $WAIT_WHY"
rs_start nginx || die "nginx + docker-registry did not start: $WAIT_WHY"
if [[ $RS_AIO_OK == 1 ]]; then
    if rs_start aio; then
        put rs.aio.status ok
    else
        RS_AIO_OK=0; PORTCULLIS_FAILED=1
        put rs.aio.status "n/a: '$PORTCULLIS serve' with the all-in-one proxy.toml $WAIT_WHY"
        stop_pid "$RS_AIO_PID"; forget_pid "$RS_AIO_PID"; RS_AIO_PID=""
    fi
else
    put rs.aio.status "n/a: $PORTCULLIS_WHY"
fi
log "stacks up: registry TLS $RS_NATIVE_PID, nginx $RS_NGINX_PID + registry $RS_UP_PID${RS_AIO_PID:+, portcullis all-in-one $RS_AIO_PID}"

# ---------------------------------------------------------------- seed: a small image in each stack
# Pushed with curl through each stack's own front door (authenticated): a 1 KiB random
# layer, a config blob, and an OCI manifest tagged bench/small:v1.
head -c 1024 /dev/urandom >"$RS/small.bin"
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha256sum "$RS/small.bin" | cut -c1-64)" >"$RS/config.json"
RS_LAYER_DIGEST=sha256:$(sha256sum "$RS/small.bin" | cut -c1-64)
RS_CONFIG_DIGEST=sha256:$(sha256sum "$RS/config.json" | cut -c1-64)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
    "$RS_CONFIG_DIGEST" "$(stat -c %s "$RS/config.json")" "$RS_LAYER_DIGEST" "$(stat -c %s "$RS/small.bin")" >"$RS/manifest.json"
RS_MANIFEST_DIGEST=sha256:$(sha256sum "$RS/manifest.json" | cut -c1-64)
declare -A RS_PATH=([head]=/v2/bench/small/manifests/v1 [blob]=/v2/bench/small/blobs/$RS_LAYER_DIGEST)
RS_CASES=(head blob)

rs_curl() { curl -sS --cacert "$CA" -u "$RS_USER:$RS_PASS" --max-time 120 "$@"; }

RS_WHY=""
rs_put_blob() { # STACK REPO FILE DIGEST: monolithic POST + PUT ?digest=; 1 + RS_WHY on failure
    local base loc sep code
    base=https://127.0.0.1:$(rs_port "$1")
    loc=$(rs_curl -D - -o /dev/null -X POST "$base/v2/$2/blobs/uploads/" 2>&1 \
        | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r') || true
    [[ -n $loc ]] || { RS_WHY="POST /v2/$2/blobs/uploads/ gave no Location"; return 1; }
    [[ $loc == /* ]] && loc=$base$loc
    sep='?'; [[ $loc == *\?* ]] && sep='&'
    code=$(rs_curl -o /dev/null -w '%{http_code}' -T "$3" -H 'Content-Type: application/octet-stream' \
        "$loc${sep}digest=$4" 2>&1) || true
    [[ $code == 201 ]] || { RS_WHY="PUT of blob $4 answered '$code' (want 201)"; return 1; }
}
rs_seed() { # STACK
    local s=$1 code
    rs_put_blob "$s" bench/small "$RS/small.bin" "$RS_LAYER_DIGEST" \
        && rs_put_blob "$s" bench/small "$RS/config.json" "$RS_CONFIG_DIGEST" \
        || { rs_fail "$s" seed "$RS_WHY"; return 1; }
    code=$(rs_curl -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$RS/manifest.json" "$(rs_url "$s" /v2/bench/small/manifests/v1)" 2>&1) || true
    [[ $code == 201 ]] || { rs_fail "$s" seed "PUT of the manifest bench/small:v1 answered '$code' (want 201)"; return 1; }
}

# check STACK CASE HV: 401 without credentials, 200 with, right protocol, right digest/bytes
rs_check() {
    local s=$1 c=$2 hv=$3 opt url out m=() dcd what
    opt=--http1.1; [[ $hv == 2 ]] && opt=--http2
    url=$(rs_url "$s" "${RS_PATH[$c]}")
    what="GET ${RS_PATH[$c]}"
    [[ $c == head ]] && { m=(--head -H "Accept: $RS_ACCEPT"); what="HEAD ${RS_PATH[$c]}"; }
    local key=h${hv%.1}.$c
    out=$(curl -sS $opt --cacert "$CA" "${m[@]}" -o /dev/null -w '%{http_code} %{http_version}' --max-time 120 "$url" 2>&1) || true
    [[ $out == "401 $hv" ]] || { rs_fail "$s" "$key" "without credentials $what answered '$out' (want '401 $hv': is auth enforced?)"; return 1; }
    out=$(rs_curl $opt "${m[@]}" -D "$RS/check.hdr" -o "$RS/check.body" -w '%{http_code} %{http_version}' "$url" 2>&1) || true
    [[ $out == "200 $hv" ]] || { rs_fail "$s" "$key" "as $RS_USER $what answered '$out' (want '200 $hv')"; return 1; }
    if [[ $c == head ]]; then
        dcd=$(awk 'tolower($1) == "docker-content-digest:" {print $2}' "$RS/check.hdr" | tr -d '\r')
        [[ $dcd == "$RS_MANIFEST_DIGEST" ]] || { rs_fail "$s" "$key" "HEAD of the manifest gave Docker-Content-Digest '$dcd' (want $RS_MANIFEST_DIGEST)"; return 1; }
    elif ! cmp -s "$RS/check.body" "$RS/small.bin"; then
        rs_fail "$s" "$key" "the 1 KiB blob came back with different bytes"; return 1
    fi
    return 0
}

for s in $(rs_stacks); do
    if rs_seed "$s"; then
        for c in "${RS_CASES[@]}"; do
            rs_check "$s" "$c" 1.1 || true
            rs_check "$s" "$c" 2 || true
        done
    else
        for c in "${RS_CASES[@]}"; do RS_BROKEN[h1.$c]=seed RS_BROKEN[h2.$c]=seed RS_BROKEN[rss.$c]=seed; done
    fi
done
log "seeded bench/small:v1 (manifest $RS_MANIFEST_DIGEST, 1 KiB layer) into each stack; checks done (401 without credentials, 200 with, HTTP/1.1 and HTTP/2)"

# ---------------------------------------------------------------- CPU accounting
declare -A RS_T0=() RS_DT=()
rs_ticks_start() { # STACK
    local p
    for p in $(rs_parts "$1"); do RS_T0[$p]=$(ticks $(rs_part_pids "$1" "$p")) || return 1; done
}
rs_ticks_end() { # STACK -> RS_DT[part] = ticks since rs_ticks_start
    local p t
    for p in $(rs_parts "$1"); do
        t=$(ticks $(rs_part_pids "$1" "$p")) || return 1
        RS_DT[$p]=$((t - RS_T0[$p]))
    done
}
rs_put_cpu() { # STACK KEY REQUESTS: KEY.cpu_us (all parts) and KEY.<part>_cpu_us; echoes a summary
    local p sum=0 detail=""
    for p in $(rs_parts "$1"); do
        sum=$((sum + RS_DT[$p]))
        put "$2.${p}_cpu_us" "$(calc "${RS_DT[$p]} * 1e6 / $HZ / $3")"
        detail+=" $p $(calc "round(${RS_DT[$p]} * 1e6 / $HZ / $3)")"
    done
    put "$2.cpu_us" "$(calc "$sum * 1e6 / $HZ / $3")"
    echo "$(calc "round($sum * 1e6 / $HZ / $3)") µs/req$([[ $1 == nginx ]] && echo " (${detail# })")"
}
rs_put_hwm() { # STACK KEY: KEY.hwm_kib (all parts) and KEY.<part>_hwm_kib; echoes a summary
    local p pid k sum=0 part detail=""
    for p in $(rs_parts "$1"); do
        part=0
        for pid in $(rs_part_pids "$1" "$p"); do k=$(hwm_kib "$pid") || return 1; part=$((part + k)); done
        put "$2.${p}_hwm_kib" "$part"
        sum=$((sum + part)); detail+=" $p $((part / 1024))"
    done
    put "$2.hwm_kib" "$sum"
    echo "$((sum / 1024)) MiB$([[ $1 == nginx ]] && echo " (${detail# })")"
}

# optional: PERF=1 samples Portcullis with perf during its load runs (report in $RESULTS_DIR)
RS_PERF_PID=""
rs_perf_start() { # STACK LABEL
    [[ ${PERF:-0} == 1 && $1 == aio ]] || return 0
    command -v perf >/dev/null 2>&1 || { warn "PERF=1 but perf is not installed"; return 0; }
    perf record -g -F 999 -p "$RS_AIO_PID" -o "$RS/perf.$2.data" >"$RS/perf.$2.log" 2>&1 9>&- &
    RS_PERF_PID=$!; PIDS+=("$RS_PERF_PID")
    sleep 0.5
}
rs_perf_stop() { # LABEL
    [[ -n $RS_PERF_PID ]] || return 0
    kill -INT "$RS_PERF_PID" 2>/dev/null || true
    wait "$RS_PERF_PID" 2>/dev/null || true
    forget_pid "$RS_PERF_PID"; RS_PERF_PID=""
    mkdir -p "$RESULTS_DIR"
    timeout 300 perf report -i "$RS/perf.$1.data" --stdio --no-children --percent-limit 0.5 -g none \
        --sort dso,symbol >"$RESULTS_DIR/perf-aio-$1.txt" 2>/dev/null || true
    log "  perf profile of portcullis: $RESULTS_DIR/perf-aio-$1.txt"
}

# ---------------------------------------------------------------- load runs
rs_h1() { # STACK CASE: HTTP/1.1 keep-alive, HEAD with h1load.py (wrk cannot do HEAD), GET with wrk
    local s=$1 c=$2 key=rs.$1.h1.$2 url out n rps non2xx errs
    rs_ok "$s" "h1.$c" || return 0
    url=$(rs_url "$s" "${RS_PATH[$c]}")
    out=$RS/h1.$s.$c.txt
    rs_ticks_start "$s" || { rs_fail "$s" "h1.$c" "a server process is gone (crashed?)"; return 0; }
    rs_perf_start "$s" "h1-$c"
    if [[ $c == head ]]; then
        bounded timeout $((RS_SECONDS + 60)) python3 "$HERE/h1load.py" --method HEAD -c "$WRK_CONNECTIONS" \
            -d "$RS_SECONDS" --cacert "$CA" -H "Authorization: Basic $RS_AUTH" -H "Accept: $RS_ACCEPT" \
            "$url" >"$out" 2>&1 || { rs_perf_stop "h1-$c"; cat "$out" >&9; rs_fail "$s" "h1.$c" "h1load.py failed"; return 0; }
    else
        bounded timeout $((RS_SECONDS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${RS_SECONDS}s" \
            -H "Authorization: Basic $RS_AUTH" "$url" >"$out" 2>&1 \
            || { rs_perf_stop "h1-$c"; cat "$out" >&9; rs_fail "$s" "h1.$c" "wrk failed"; return 0; }
    fi
    rs_ticks_end "$s" || { rs_perf_stop "h1-$c"; rs_fail "$s" "h1.$c" "a server process exited during the load run (crashed?)"; return 0; }
    rs_perf_stop "h1-$c"
    if [[ $c == head ]]; then
        n=$(awk '$1 == "requests" {print $2}' "$out"); rps=$(awk '$1 == "rps" {print $2}' "$out")
        non2xx=$(awk '$1 == "non2xx" {print $2}' "$out"); errs=$(awk '$1 == "errors" {print $2}' "$out")
        [[ ${errs:-0} == 0 ]] || put "$key.socket_errors" "$errs errors ($(awk '$1 == "statuses" {print $2}' "$out"))"
    else
        n=$(awk '/ requests in /{print $1}' "$out"); rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' "$out")
        errs=$(awk '/Socket errors:/{sub(/.*Socket errors: /, ""); print}' "$out")
        [[ -z $errs ]] || put "$key.socket_errors" "$errs"
    fi
    [[ -n $n && $n -gt 0 ]] || { cat "$out" >&9; rs_fail "$s" "h1.$c" "the load run completed no requests"; return 0; }
    [[ ${non2xx:-0} == 0 ]] || { rs_fail "$s" "h1.$c" "$non2xx non-2xx responses out of $n"; return 0; }
    put "$key.requests" "$n"
    put "$key.rps" "$rps"
    log "  h1 $c, $(rs_label "$s"): $n requests, $rps req/s, $(rs_put_cpu "$s" "$key" "$n")"
}

rs_h2() { # STACK CASE MODE: HTTP/2 with h2load; MODE cpu (-D, 8x10) or rss (-n, 32x10, VmHWM after)
    local s=$1 c=$2 mode=$3 key url out total ok bad rps m=() load=() bcase
    if [[ $mode == cpu ]]; then
        key=rs.$s.h2.$c; bcase=h2.$c
        load=(-c "$RS_H2_CLIENTS" -m "$RS_H2_STREAMS" -D "$RS_SECONDS")
    else
        key=rs.$s.rss.$c; bcase=rss.$c
        rs_ok "$s" "h2.$c" || return 0
        load=(-c "$RSS_CLIENTS" -m "$RSS_STREAMS" -n "$RSS_REQUESTS")
    fi
    rs_ok "$s" "$bcase" || return 0
    [[ $c == head ]] && m=(-H ':method: HEAD' -H "accept: $RS_ACCEPT")
    url=$(rs_url "$s" "${RS_PATH[$c]}")
    out=$RS/h2load.$mode.$s.$c.txt
    rs_ticks_start "$s" || { rs_fail "$s" "$bcase" "a server process is gone (crashed?)"; return 0; }
    [[ $mode == cpu ]] && rs_perf_start "$s" "h2-$c"
    bounded timeout 900 h2load "${load[@]}" -H "authorization: Basic $RS_AUTH" "${m[@]}" "$url" >"$out" 2>&1 \
        || { rs_perf_stop "h2-$c"; cat "$out" >&9; rs_fail "$s" "$bcase" "h2load failed or timed out"; return 0; }
    rs_ticks_end "$s" || { rs_perf_stop "h2-$c"; rs_fail "$s" "$bcase" "a server process exited during the load run (crashed?)"; return 0; }
    rs_perf_stop "h2-$c"
    grep -q '^Application protocol: h2$' "$out" || { cat "$out" >&9; rs_fail "$s" "$bcase" "h2load did not negotiate h2"; return 0; }
    # with -D, responses that arrive after the deadline are in "status codes" but not in
    # "requests", so the check is: every counted request succeeded and no status was not 2xx
    IFS='|' read -r total ok _ bad rps < <(h2load_counts "$out")
    if [[ -z $ok || $ok == 0 || $ok != "$total" || ${bad:-1} != 0 ]]; then
        cat "$out" >&9
        rs_fail "$s" "$bcase" "h2load: $total requests, ${ok:-0} succeeded, ${bad:-?} with a non-2xx status"; return 0
    fi
    put "rs.$s.tls" "$(awk -F': ' '/^TLS Protocol:/{p=$2} /^Cipher:/{c=$2} END{print p ", " c}' "$out")"
    put "$key.requests" "$ok"
    put "$key.rps" "$rps"
    local cpu hwm=""
    cpu=$(rs_put_cpu "$s" "$key" "$ok")
    if [[ $mode == rss ]]; then
        hwm=$(rs_put_hwm "$s" "$key") || { rs_fail "$s" "$bcase" "a server process is gone after the load run"; return 0; }
        hwm=", peak RSS $hwm"
    fi
    log "  h2 $c ($mode), $(rs_label "$s"): $ok requests, $rps req/s, $cpu$hwm"
}

log "CPU per request, HTTP/1.1 keep-alive (${RS_SECONDS}s per case and stack)"
for c in "${RS_CASES[@]}"; do
    for s in $(rs_stacks); do rs_h1 "$s" "$c"; done
done
log "CPU per request, HTTP/2 (h2load -c $RS_H2_CLIENTS -m $RS_H2_STREAMS -D ${RS_SECONDS}s)"
for c in "${RS_CASES[@]}"; do
    for s in $(rs_stacks); do rs_h2 "$s" "$c" cpu; done
done

# ---------------------------------------------------------------- push + pull with skopeo
RS_CHILD_CPU=0
rs_child_cpu() { # -> RS_CHILD_CPU = user+sys seconds of every child this shell has waited for
    # (the builtin `times` must run in this shell, not in a $(...) subshell)
    times >"$RS/times.txt"
    RS_CHILD_CPU=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } print n }' "$RS/times.txt")
}
rs_dt_s() { # STACK -> server CPU seconds in RS_DT, all parts summed
    local p sum=0
    for p in $(rs_parts "$1"); do sum=$((sum + RS_DT[$p])); done
    calc "$sum / $HZ"
}

rs_pushpull() { # STACK RUN: fresh random image, timed push, then timed pull into a fresh oci: dir
    local s=$1 r=$2 img=$RS/img-$1-$2 pulled=$RS/pull-$1-$2 ref bytes t0 t1 t2 t3 code c0 push_cpu pull_cpu push_cl pull_cl
    rs_ok "$s" push && rs_ok "$s" pull || return 0
    bytes=$(python3 "$HERE/mkoci.py" "$img" --layers-mib "$LAYERS_MIB") || die "mkoci.py could not build $img"
    sync
    ref=127.0.0.1:$(rs_port "$s")/bench/push-$s-$r:latest
    rs_ticks_start "$s" || { rm -rf "$img"; rs_fail "$s" push "a server process is gone (crashed?)"; return 0; }
    rs_child_cpu; c0=$RS_CHILD_CPU
    t0=$(date +%s.%N)
    if ! bounded timeout 900 skopeo --insecure-policy copy --retry-times 0 \
        --dest-creds "$RS_USER:$RS_PASS" --dest-cert-dir "$SKOPEO_CERTS" \
        "oci:$img:latest" "docker://$ref" >"$RS/skopeo.push.$s.$r.log" 2>&1; then
        cat "$RS/skopeo.push.$s.$r.log" >&9; rm -rf "$img"
        rs_fail "$s" push "skopeo copy to docker://$ref failed"; return 0
    fi
    t1=$(date +%s.%N)
    rs_child_cpu; push_cl=$(calc "$RS_CHILD_CPU - $c0")
    rs_ticks_end "$s" || { rm -rf "$img"; rs_fail "$s" push "a server process exited during the push (crashed?)"; return 0; }
    push_cpu=$(rs_dt_s "$s")
    code=$(rs_curl --head -H "Accept: $RS_ACCEPT" -o /dev/null -w '%{http_code}' \
        "$(rs_url "$s" "/v2/bench/push-$s-$r/manifests/latest")" 2>&1) || true
    [[ $code == 200 ]] || { rm -rf "$img"; rs_fail "$s" push "after the push, HEAD of its manifest answers '$code' (want 200)"; return 0; }
    sync
    rs_ticks_start "$s" || { rm -rf "$img"; rs_fail "$s" pull "a server process is gone (crashed?)"; return 0; }
    rs_child_cpu; c0=$RS_CHILD_CPU
    t2=$(date +%s.%N)
    if ! bounded timeout 900 skopeo --insecure-policy copy --retry-times 0 \
        --src-creds "$RS_USER:$RS_PASS" --src-cert-dir "$SKOPEO_CERTS" \
        "docker://$ref" "oci:$pulled:latest" >"$RS/skopeo.pull.$s.$r.log" 2>&1; then
        cat "$RS/skopeo.pull.$s.$r.log" >&9; rm -rf "$img" "$pulled"
        rs_fail "$s" pull "skopeo copy from docker://$ref failed"; return 0
    fi
    t3=$(date +%s.%N)
    rs_child_cpu; pull_cl=$(calc "$RS_CHILD_CPU - $c0")
    rs_ticks_end "$s" || { rm -rf "$img" "$pulled"; rs_fail "$s" pull "a server process exited during the pull (crashed?)"; return 0; }
    pull_cpu=$(rs_dt_s "$s")
    # the pulled layout must hold exactly the blobs that were pushed (names = sha256 digests)
    if [[ $(ls "$img/blobs/sha256" | sort) != "$(ls "$pulled/blobs/sha256" 2>/dev/null | sort)" ]]; then
        rm -rf "$img" "$pulled"
        rs_fail "$s" pull "the pulled image's blobs differ from the pushed ones"; return 0
    fi
    rm -rf "$img" "$pulled"
    calc "$t1 - $t0" >>"$RS/push.$s"
    calc "$t3 - $t2" >>"$RS/pull.$s"
    echo "$push_cpu" >>"$RS/push_cpu.$s"; echo "$pull_cpu" >>"$RS/pull_cpu.$s"
    echo "$push_cl" >>"$RS/push_client.$s"; echo "$pull_cl" >>"$RS/pull_client.$s"
    put meta.rs.push_bytes "$bytes"
    log "  $(rs_label "$s") (run $r): push $(calc "round($t1 - $t0, 2)") s (server CPU $(calc "round($push_cpu, 2)") s, skopeo CPU $(calc "round($push_cl, 2)") s), pull $(calc "round($t3 - $t2, 2)") s (server CPU $(calc "round($pull_cpu, 2)") s, skopeo CPU $(calc "round($pull_cl, 2)") s)"
}

rs_restart_all "push/pull phase"
log "skopeo push + pull of a $(calc "round(sum(map(float, '$LAYERS_MIB'.split(','))))") MiB image, $RS_RUNS run(s) per stack"
for ((r = 1; r <= RS_RUNS; r++)); do
    for s in $(rs_stacks); do rs_pushpull "$s" "$r"; done
done
for s in $(rs_stacks); do
    for f in push pull push_cpu pull_cpu push_client pull_client; do
        [[ -s $RS/$f.$s ]] && put "rs.$s.$f.runs" "$(paste -sd' ' "$RS/$f.$s")"
    done
    if rs_ok "$s" push && rs_ok "$s" pull; then
        hwm=$(rs_put_hwm "$s" "rs.$s.pp") || { rs_fail "$s" push "a server process is gone after the push/pull runs"; continue; }
        log "  peak RSS over push/pull, $(rs_label "$s"): $hwm"
    fi
done

# ---------------------------------------------------------------- RSS under 32 x 10 HTTP/2 streams
for c in blob head; do
    rs_restart_all "RSS under $RSS_CLIENTS x $RSS_STREAMS streams, $c"
    for s in $(rs_stacks); do rs_h2 "$s" "$c" rss; done
done

# ---------------------------------------------------------------- wrap up
for s in $(rs_stacks); do
    [[ $s == aio ]] && ! alive "$RS_AIO_PID" && { PORTCULLIS_FAILED=1; warn "portcullis all-in-one exited during the run; last lines of its log:"; tail -n 20 "$RS/portcullis.log" >&9; }
    rs_stop "$s"
done
[[ $KEEP == 1 ]] || rm -rf "$RS/native-data" "$RS/registry-data" "$RS/portcullis-data"
log "registry suite done"
