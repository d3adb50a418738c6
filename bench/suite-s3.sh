# bench/suite-s3.sh: the s3 suite, sourced by bench/run.sh (not run on its own).
# Portcullis all-in-one with its registry on S3 against the same on the filesystem, on
# the same machine in one run, with the same certificate and htpasswd:
#
#   fs    Portcullis all-in-one, [registry] storage = "fs" (templates/allinone.toml.in,
#         exactly the registry suite's configuration)
#   s3    Portcullis all-in-one, [registry] storage = "s3" on a local s3s-fs
#         (templates/allinone-s3.toml.in, redirect = false); CPU and RSS are given for
#         Portcullis alone and for Portcullis + s3s-fs
#   s3r   the same bucket and key prefix with redirect = true (blob GETs answer 307 to
#         a presigned URL), only for the blob GET figures
#
# Three measurements: skopeo push + pull of a ~300 MiB image (median of RS_RUNS rounds),
# peak RSS during a push of a 1 GiB single-layer image (fresh processes), and instance
# CPU per blob GET with and without redirect. Uses run.sh's helpers, certificates,
# htpasswd ($HTPASSWD: only its bcrypt user) and $RESULTS. Keys it writes start with
# "s3.". See bench/README.md for every figure.

S3_BIG_MIB=${S3_BIG_MIB:-1024}
S3_GET_KIB=${S3_GET_KIB:-1024}
log "== s3 suite: Portcullis all-in-one on S3 (s3s-fs) vs on the filesystem"
put meta.s3.push "layers of $LAYERS_MIB MiB, $RS_RUNS run(s)"
put meta.s3.big "one layer of $S3_BIG_MIB MiB"
put meta.s3.get "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${RS_SECONDS}s, GET of a $S3_GET_KIB KiB blob, $RS_RUNS run(s)"
put meta.s3.s3s_fs "$("$S3S_FS" --version 2>&1 | head -n1), $S3S_FS"

S3D=$WORK/s3
mkdir -p "$S3D/objects/registry"
read -r S3_OBJ_PORT S3_FS_PORT S3_S3_PORT S3_S3R_PORT < <(free_ports 4)
log "ports: s3s-fs $S3_OBJ_PORT, portcullis on fs $S3_FS_PORT, on S3 $S3_S3_PORT, on S3 with redirect $S3_S3R_PORT"

# the bcrypt cost-5 user only, as in the registry suite (same file for every instance)
grep "^$BCRYPT_USER:" "$HTPASSWD" >"$S3D/htpasswd"
S3_USER=$BCRYPT_USER
S3_PASS=${PASS[$BCRYPT_USER]}
S3_AUTH=$(basic "$S3_USER")
S3_ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# random per run, like the htpasswd passwords; upper-case hex as AWS access key ids look
S3_AK=BENCH$(openssl rand -hex 8 | tr a-f A-F)
S3_SK=$(openssl rand -hex 20)

S3_OK=$PORTCULLIS_BIN_OK
if [[ $S3_OK == 1 ]]; then
    # fs: the registry suite's template as it is (data in $S3D/portcullis-data)
    BENCH_RS=$S3D BENCH_AIO_PORT=$S3_FS_PORT render "$HERE/templates/allinone.toml.in" "$S3D/fs.toml"
    for s in s3 s3r; do
        BENCH_RS=$S3D BENCH_AIO_PORT=$([[ $s == s3 ]] && echo "$S3_S3_PORT" || echo "$S3_S3R_PORT") \
            BENCH_OBJ_PORT=$S3_OBJ_PORT BENCH_BUCKET=registry BENCH_PREFIX=b \
            BENCH_OBJ_KEY=$S3_AK BENCH_OBJ_SECRET=$S3_SK \
            BENCH_REDIRECT=$([[ $s == s3r ]] && echo true || echo false) \
            render "$HERE/templates/allinone-s3.toml.in" "$S3D/$s.toml"
    done
fi

# ---------------------------------------------------------------- processes
S3S_PID="" S3_FS_PID="" S3_S3_PID="" S3_S3R_PID=""
declare -A S3_BROKEN=()   # stack -> reason: that stack is out of the rest of the suite

s3_label() { case $1 in fs) echo "portcullis on fs" ;; s3) echo "portcullis on S3" ;; s3r) echo "portcullis on S3 (redirect = true)" ;; esac; }
s3_port()  { case $1 in fs) echo "$S3_FS_PORT" ;; s3) echo "$S3_S3_PORT" ;; s3r) echo "$S3_S3R_PORT" ;; esac; }
s3_pid()   { case $1 in fs) echo "$S3_FS_PID" ;; s3) echo "$S3_S3_PID" ;; s3r) echo "$S3_S3R_PID" ;; esac; }
s3_url()   { echo "https://127.0.0.1:$(s3_port "$1")$2"; }
s3_parts() { [[ $1 == fs ]] && echo portcullis || echo "portcullis s3s"; }
s3_part_pid() { [[ $2 == s3s ]] && echo "$S3S_PID" || s3_pid "$1"; }
s3_curl() { curl -sS --cacert "$CA" -u "$S3_USER:$S3_PASS" --max-time 300 "$@"; }

s3s_gone() { # WHEN: s3s-fs is the harness's S3 server; its death is fatal, with its log
    warn "s3s-fs (pid $S3S_PID) is gone $1; last lines of $S3D/s3s-fs.log:"
    tail -n 20 "$S3D/s3s-fs.log" >&9 2>/dev/null || true
    die "s3s-fs, the local S3 server of the s3 suite, exited $1"
}

s3_fail() { # STACK CASE REASON: a Portcullis case failed: FAIL in the table, exit 3 at the end
    local logf=$S3D/portcullis-$1.log
    if [[ $2 == start ]]; then   # wait_port has shown the log already
        warn "PORTCULLIS $(s3_label "$1"), $2: $3"
    else
        warn "PORTCULLIS $(s3_label "$1"), $2: $3; last lines of $logf:"
        tail -n 15 "$logf" >&9 2>/dev/null || true
    fi
    put "s3.$1.$2.error" "$3"
    PORTCULLIS_FAILED=1
    # s3s-fs dying is the harness's failure, not Portcullis's: say so and stop
    [[ $1 == fs ]] || alive "$S3S_PID" || s3s_gone "during '$2' of $(s3_label "$1")"
}
s3_ok() { [[ $S3_OK == 1 && -z ${S3_BROKEN[$1]:-} ]]; }

s3s_start() { # the S3 server; failing to start is fatal
    RUST_LOG=${S3S_LOG:-warn} "$S3S_FS" --host 127.0.0.1 --port "$S3_OBJ_PORT" --access-key "$S3_AK" --secret-key "$S3_SK" \
        "$S3D/objects" >>"$S3D/s3s-fs.log" 2>&1 9>&- &
    S3S_PID=$!; PIDS+=("$S3S_PID")
    wait_port "$S3_OBJ_PORT" "$S3S_PID" s3s-fs "$S3D/s3s-fs.log" 30 \
        || die "s3s-fs ($S3S_FS) did not start on 127.0.0.1:$S3_OBJ_PORT: $WAIT_WHY"
}
s3_start() { # STACK: start one Portcullis; on failure the stack is FAIL and out of the suite
    local pid
    s3_ok "$1" || return 1
    "$PORTCULLIS" serve -c "$S3D/$1.toml" >>"$S3D/portcullis-$1.log" 2>&1 9>&- &
    pid=$!; PIDS+=("$pid")
    case $1 in fs) S3_FS_PID=$pid ;; s3) S3_S3_PID=$pid ;; s3r) S3_S3R_PID=$pid ;; esac
    wait_port "$(s3_port "$1")" "$pid" "$(s3_label "$1")" "$S3D/portcullis-$1.log" 30 && return 0
    s3_fail "$1" start "'$PORTCULLIS serve' with $1.toml $WAIT_WHY"
    S3_BROKEN[$1]=start
    s3_stop "$1"
    return 1
}
s3_stop() { # STACK|s3s
    local p
    case $1 in
        fs) p=$S3_FS_PID; S3_FS_PID="" ;;
        s3) p=$S3_S3_PID; S3_S3_PID="" ;;
        s3r) p=$S3_S3R_PID; S3_S3R_PID="" ;;
        s3s) p=$S3S_PID; S3S_PID="" ;;
    esac
    [[ -n $p ]] || return 0
    stop_pid "$p"; forget_pid "$p"
}

# ---------------------------------------------------------------- CPU and RSS accounting
declare -A S3_T0=() S3_DT=()
s3_ticks_start() { # STACK
    local p
    for p in $(s3_parts "$1"); do S3_T0[$p]=$(ticks "$(s3_part_pid "$1" "$p")") || return 1; done
}
s3_ticks_end() { # STACK -> S3_DT[part] = ticks since s3_ticks_start
    local p t
    for p in $(s3_parts "$1"); do
        t=$(ticks "$(s3_part_pid "$1" "$p")") || return 1
        S3_DT[$p]=$((t - S3_T0[$p]))
    done
}
s3_dt_s() { # STACK [PART] -> CPU seconds in S3_DT, one part or all parts summed
    local p sum=0
    for p in ${2:-$(s3_parts "$1")}; do sum=$((sum + S3_DT[$p])); done
    calc "$sum / $HZ"
}

# ---------------------------------------------------------------- start, seed, checks
if [[ $S3_OK == 1 ]]; then
    s3s_start
    for s in fs s3; do s3_start "$s" || true; done
    put s3.status ok
    log "up: s3s-fs $S3S_PID, portcullis on fs ${S3_FS_PID:-(failed)}, on S3 ${S3_S3_PID:-(failed)}"
else
    put s3.status "n/a: $PORTCULLIS_WHY"
    warn "s3 suite: nothing to measure without Portcullis ($PORTCULLIS_WHY)"
fi

S3_WHY=""
s3_put_blob() { # STACK REPO FILE DIGEST: monolithic POST + PUT ?digest=; 1 + S3_WHY on failure
    local base loc sep code
    base=https://127.0.0.1:$(s3_port "$1")
    loc=$(s3_curl -D - -o /dev/null -X POST "$base/v2/$2/blobs/uploads/" 2>&1 \
        | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r') || true
    [[ -n $loc ]] || { S3_WHY="POST /v2/$2/blobs/uploads/ gave no Location"; return 1; }
    [[ $loc == /* ]] && loc=$base$loc
    sep='?'; [[ $loc == *\?* ]] && sep='&'
    code=$(s3_curl -o /dev/null -w '%{http_code}' -T "$3" -H 'Content-Type: application/octet-stream' \
        "$loc${sep}digest=$4" 2>&1) || true
    [[ $code == 201 ]] || { S3_WHY="PUT of blob $4 answered '$code' (want 201)"; return 1; }
}

# A 1 KiB blob through each instance's front door: 401 without credentials, 201 for the
# upload with them, the same bytes back, over HTTP/1.1 and HTTP/2.
head -c 1024 /dev/urandom >"$S3D/small.bin"
S3_SMALL=sha256:$(sha256sum "$S3D/small.bin" | cut -c1-64)
for s in fs s3; do
    s3_ok "$s" || continue
    out=$(curl -sS --cacert "$CA" -o /dev/null -w '%{http_code}' --max-time 60 "$(s3_url "$s" /v2/)" 2>&1) || true
    [[ $out == 401 ]] || { s3_fail "$s" seed "without credentials GET /v2/ answered '$out' (want 401: is auth enforced?)"; S3_BROKEN[$s]=seed; continue; }
    s3_put_blob "$s" b/seed "$S3D/small.bin" "$S3_SMALL" || { s3_fail "$s" seed "$S3_WHY"; S3_BROKEN[$s]=seed; continue; }
    for hv in 1.1 2; do
        out=$(s3_curl --http$hv -o "$S3D/check.body" -w '%{http_code} %{http_version}' \
            "$(s3_url "$s" "/v2/b/seed/blobs/$S3_SMALL")" 2>&1) || true
        if [[ $out != "200 $hv" ]] || ! cmp -s "$S3D/check.body" "$S3D/small.bin"; then
            s3_fail "$s" seed "GET of the 1 KiB blob over HTTP/$hv answered '$out' (want '200 $hv' and the same bytes)"
            S3_BROKEN[$s]=seed; break
        fi
    done
done
s3_ok fs && s3_ok s3 && log "checks done: 401 without credentials, a 1 KiB blob up and back (HTTP/1.1 and HTTP/2) on both"

# ---------------------------------------------------------------- 1. push + pull with skopeo
S3_CHILD_CPU=0
s3_child_cpu() { # -> S3_CHILD_CPU = user+sys seconds of every child this shell has waited for
    times >"$S3D/times.txt"
    S3_CHILD_CPU=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } print n }' "$S3D/times.txt")
}

s3_record() { # STACK WHAT: append this window's CPU (all, portcullis, s3s-fs) to the run lists
    echo "$(s3_dt_s "$1")" >>"$S3D/$2_cpu.$1"
    echo "$(s3_dt_s "$1" portcullis)" >>"$S3D/$2_portcullis_cpu.$1"
    [[ $1 == fs ]] || echo "$(s3_dt_s "$1" s3s)" >>"$S3D/$2_s3s_cpu.$1"
}

s3_pushpull() { # STACK RUN: fresh random image, timed push, then timed pull into a fresh oci: dir
    local s=$1 r=$2 img=$S3D/img-$1-$2 pulled=$S3D/pull-$1-$2 ref bytes t0 t1 t2 t3 code c0 push_cl pull_cl
    s3_ok "$s" || return 0
    bytes=$(python3 "$HERE/mkoci.py" "$img" --layers-mib "$LAYERS_MIB") || die "mkoci.py could not build $img"
    sync
    # short repository names: s3s-fs's limit on key length (see allinone-s3.toml.in)
    ref=127.0.0.1:$(s3_port "$s")/b/p$r:latest
    s3_ticks_start "$s" || { rm -rf "$img"; s3_fail "$s" push "a server process is gone (crashed?)"; S3_BROKEN[$s]=push; return 0; }
    s3_child_cpu; c0=$S3_CHILD_CPU
    t0=$(date +%s.%N)
    if ! bounded timeout 900 skopeo --insecure-policy copy --retry-times 0 \
        --dest-creds "$S3_USER:$S3_PASS" --dest-cert-dir "$SKOPEO_CERTS" \
        "oci:$img:latest" "docker://$ref" >"$S3D/skopeo.push.$s.$r.log" 2>&1; then
        cat "$S3D/skopeo.push.$s.$r.log" >&9; rm -rf "$img"
        s3_fail "$s" push "skopeo copy to docker://$ref failed: $(tail -n 1 "$S3D/skopeo.push.$s.$r.log" | cut -c1-300)"
        S3_BROKEN[$s]=push; return 0
    fi
    t1=$(date +%s.%N)
    s3_child_cpu; push_cl=$(calc "$S3_CHILD_CPU - $c0")
    s3_ticks_end "$s" || { rm -rf "$img"; s3_fail "$s" push "a server process exited during the push (crashed?)"; S3_BROKEN[$s]=push; return 0; }
    s3_record "$s" push
    code=$(s3_curl --head -H "Accept: $S3_ACCEPT" -o /dev/null -w '%{http_code}' \
        "$(s3_url "$s" "/v2/b/p$r/manifests/latest")" 2>&1) || true
    [[ $code == 200 ]] || { rm -rf "$img"; s3_fail "$s" push "after the push, HEAD of its manifest answers '$code' (want 200)"; S3_BROKEN[$s]=push; return 0; }
    sync
    s3_ticks_start "$s" || { rm -rf "$img"; s3_fail "$s" pull "a server process is gone (crashed?)"; S3_BROKEN[$s]=pull; return 0; }
    s3_child_cpu; c0=$S3_CHILD_CPU
    t2=$(date +%s.%N)
    if ! bounded timeout 900 skopeo --insecure-policy copy --retry-times 0 \
        --src-creds "$S3_USER:$S3_PASS" --src-cert-dir "$SKOPEO_CERTS" \
        "docker://$ref" "oci:$pulled:latest" >"$S3D/skopeo.pull.$s.$r.log" 2>&1; then
        cat "$S3D/skopeo.pull.$s.$r.log" >&9; rm -rf "$img" "$pulled"
        s3_fail "$s" pull "skopeo copy from docker://$ref failed: $(tail -n 1 "$S3D/skopeo.pull.$s.$r.log" | cut -c1-300)"
        S3_BROKEN[$s]=pull; return 0
    fi
    t3=$(date +%s.%N)
    s3_child_cpu; pull_cl=$(calc "$S3_CHILD_CPU - $c0")
    s3_ticks_end "$s" || { rm -rf "$img" "$pulled"; s3_fail "$s" pull "a server process exited during the pull (crashed?)"; S3_BROKEN[$s]=pull; return 0; }
    s3_record "$s" pull
    # the pulled layout must hold exactly the blobs that were pushed (names = sha256 digests)
    if [[ $(ls "$img/blobs/sha256" | sort) != "$(ls "$pulled/blobs/sha256" 2>/dev/null | sort)" ]]; then
        rm -rf "$img" "$pulled"
        s3_fail "$s" pull "the pulled image's blobs differ from the pushed ones"; S3_BROKEN[$s]=pull; return 0
    fi
    rm -rf "$img" "$pulled"
    calc "$t1 - $t0" >>"$S3D/push.$s"
    calc "$t3 - $t2" >>"$S3D/pull.$s"
    echo "$push_cl" >>"$S3D/push_client.$s"; echo "$pull_cl" >>"$S3D/pull_client.$s"
    put meta.s3.push_bytes "$bytes"
    log "  $(s3_label "$s") (run $r): push $(calc "round($t1 - $t0, 2)") s (server CPU $(calc "round($(tail -n1 "$S3D/push_cpu.$s"), 2)") s$([[ $s == fs ]] || echo ", of which portcullis $(calc "round($(tail -n1 "$S3D/push_portcullis_cpu.$s"), 2)") s"), skopeo CPU $(calc "round($push_cl, 2)") s), pull $(calc "round($t3 - $t2, 2)") s (server CPU $(calc "round($(tail -n1 "$S3D/pull_cpu.$s"), 2)") s$([[ $s == fs ]] || echo ", of which portcullis $(calc "round($(tail -n1 "$S3D/pull_portcullis_cpu.$s"), 2)") s"), skopeo CPU $(calc "round($pull_cl, 2)") s)"
}

s3_hwm() { # STACK KEY: KEY.hwm_kib (Portcullis) and, on S3, KEY.s3s_hwm_kib; echoes a summary
    local k m
    k=$(hwm_kib "$(s3_pid "$1")") || return 1
    put "$2.hwm_kib" "$k"
    [[ $1 == fs ]] && { echo "portcullis $((k / 1024)) MiB"; return 0; }
    m=$(hwm_kib "$S3S_PID") || return 1
    put "$2.s3s_hwm_kib" "$m"
    echo "portcullis $((k / 1024)) MiB, s3s-fs $((m / 1024)) MiB"
}

if s3_ok fs || s3_ok s3; then
    log "skopeo push + pull of a $(calc "round(sum(map(float, '$LAYERS_MIB'.split(','))))") MiB image, $RS_RUNS run(s) per instance"
    for ((r = 1; r <= RS_RUNS; r++)); do
        for s in fs s3; do s3_pushpull "$s" "$r"; done
    done
    for s in fs s3; do
        for f in push pull push_cpu pull_cpu push_portcullis_cpu pull_portcullis_cpu push_s3s_cpu pull_s3s_cpu push_client pull_client; do
            [[ -s $S3D/$f.$s ]] && put "s3.$s.$f.runs" "$(paste -sd' ' "$S3D/$f.$s")"
        done
        if s3_ok "$s"; then
            hwm=$(s3_hwm "$s" "s3.$s.pp") || { s3_fail "$s" push "a server process is gone after the push/pull runs"; S3_BROKEN[$s]=push; continue; }
            log "  peak RSS over the seed and push/pull runs, $(s3_label "$s"): $hwm"
        fi
    done
fi

# ---------------------------------------------------------------- 2. peak RSS, 1 GiB single-layer push
# Fresh processes (s3s-fs too), so that each VmHWM is this push's own.
s3_big() { # STACK IMG
    local s=$1 img=$2 ref t0 t1 code hwm
    s3_ok "$s" || return 0
    ref=127.0.0.1:$(s3_port "$s")/b/big:latest
    # the push before this one left gigabytes of dirty pages (s3s-fs writes each byte
    # three times); without this, writeback would be charged to whichever push is next
    sync
    s3_ticks_start "$s" || { s3_fail "$s" big "a server process is gone (crashed?)"; return 0; }
    t0=$(date +%s.%N)
    if ! bounded timeout 1800 skopeo --insecure-policy copy --retry-times 0 \
        --dest-creds "$S3_USER:$S3_PASS" --dest-cert-dir "$SKOPEO_CERTS" \
        "oci:$img:latest" "docker://$ref" >"$S3D/skopeo.big.$s.log" 2>&1; then
        cat "$S3D/skopeo.big.$s.log" >&9
        s3_fail "$s" big "skopeo copy of the $S3_BIG_MIB MiB image to docker://$ref failed: $(tail -n 1 "$S3D/skopeo.big.$s.log" | cut -c1-300)"
        return 0
    fi
    t1=$(date +%s.%N)
    s3_ticks_end "$s" || { s3_fail "$s" big "a server process exited during the push (crashed?)"; return 0; }
    hwm=$(s3_hwm "$s" "s3.$s.big") || { s3_fail "$s" big "a server process is gone after the push"; return 0; }
    code=$(s3_curl --head -H "Accept: $S3_ACCEPT" -o /dev/null -w '%{http_code}' \
        "$(s3_url "$s" /v2/b/big/manifests/latest)" 2>&1) || true
    [[ $code == 200 ]] || { s3_fail "$s" big "after the push, HEAD of its manifest answers '$code' (want 200)"; return 0; }
    put "s3.$s.big.seconds" "$(calc "$t1 - $t0")"
    put "s3.$s.big.cpu_s" "$(s3_dt_s "$s")"
    put "s3.$s.big.portcullis_cpu_s" "$(s3_dt_s "$s" portcullis)"
    [[ $s == fs ]] || put "s3.$s.big.s3s_cpu_s" "$(s3_dt_s "$s" s3s)"
    log "  $(s3_label "$s"): $S3_BIG_MIB MiB push $(calc "round($t1 - $t0, 2)") s, server CPU $(calc "round($(s3_dt_s "$s"), 2)") s; peak RSS $hwm"
}

if s3_ok fs || s3_ok s3; then
    log "peak RSS during a push of a $S3_BIG_MIB MiB single-layer image (fresh processes)"
    for s in fs s3; do s3_stop "$s"; done
    s3_stop s3s
    s3s_start
    for s in fs s3; do s3_start "$s" || true; done
    python3 "$HERE/mkoci.py" "$S3D/img-big" --layers-mib "$S3_BIG_MIB" >"$S3D/big.bytes" || die "mkoci.py could not build the $S3_BIG_MIB MiB image"
    put meta.s3.big_bytes "$(cat "$S3D/big.bytes")"
    sync
    # one image for both: they are two separate stores, so neither can skip the upload
    for s in s3 fs; do s3_big "$s" "$S3D/img-big"; done
    rm -rf "$S3D/img-big"
fi

# ---------------------------------------------------------------- 3. blob GET, redirect = false vs true
# One blob pushed once through the redirect = false instance; both instances share the
# bucket and key prefix. wrk does not follow redirects, so with redirect = true its
# requests cost the instance the 307 only (auth, two S3 requests, presigning).
# RS_RUNS rounds, the two instances interleaved; the report takes the median round.
s3_get_fail() { s3_fail "$1" get "$2"; S3_BROKEN[$1]=get; }
s3_get() { # STACK RUN: wrk GETs of the blob for RS_SECONDS; CPU µs per GET, statuses checked
    local s=$1 r=$2 want out n rps codes p us
    s3_ok "$s" || return 0
    want=200; [[ $s == s3r ]] && want=307
    out=$S3D/wrk.$s.$r.txt
    s3_ticks_start "$s" || { s3_get_fail "$s" "a server process is gone (crashed?)"; return 0; }
    bounded timeout $((RS_SECONDS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${RS_SECONDS}s" \
        -s "$HERE/wrk-statuses.lua" -H "Authorization: Basic $S3_AUTH" \
        "$(s3_url "$s" "/v2/b/r/blobs/$S3_GET_DIGEST")" >"$out" 2>&1 \
        || { cat "$out" >&9; s3_get_fail "$s" "wrk failed"; return 0; }
    s3_ticks_end "$s" || { s3_get_fail "$s" "a server process exited during the load run (crashed?)"; return 0; }
    n=$(awk '/ requests in /{print $1}' "$out"); rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
    codes=$(awk '$1 == "status" {printf "%s%s:%s", sep, $2, $3; sep = ","}' "$out")
    p=$(awk '/Socket errors:/{sub(/.*Socket errors: /, ""); print}' "$out")
    [[ -z $p ]] || put "s3.$s.get.$r.socket_errors" "$p"
    [[ -n $n && $n -gt 0 ]] || { cat "$out" >&9; s3_get_fail "$s" "the load run completed no requests"; return 0; }
    [[ $codes == "$want:$n" ]] || { cat "$out" >&9; s3_get_fail "$s" "statuses $codes out of $n requests (want all $want)"; return 0; }
    echo "$n" >>"$S3D/get_requests.$s"
    echo "$rps" >>"$S3D/get_rps.$s"
    echo "$codes" >>"$S3D/get_statuses.$s"
    for p in $(s3_parts "$s"); do
        us=$(calc "${S3_DT[$p]} * 1e6 / $HZ / $n")
        echo "$us" >>"$S3D/get_${p}_cpu_us.$s"
    done
    log "  $(s3_label "$s") (run $r): $n GETs ($codes), $rps req/s, portcullis $(calc "round(${S3_DT[portcullis]} * 1e6 / $HZ / $n)") µs/GET, s3s-fs $(calc "round(${S3_DT[s3s]} * 1e6 / $HZ / $n)") µs/GET"
}

if s3_ok s3; then
    log "blob GET, $S3_GET_KIB KiB, redirect = false vs true (wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${RS_SECONDS}s)"
    s3_start s3r || true
    head -c $((S3_GET_KIB * 1024)) /dev/urandom >"$S3D/get.bin"
    S3_GET_DIGEST=sha256:$(sha256sum "$S3D/get.bin" | cut -c1-64)
    if ! s3_put_blob s3 b/r "$S3D/get.bin" "$S3_GET_DIGEST"; then
        s3_fail s3 get "upload of the $S3_GET_KIB KiB blob: $S3_WHY"; S3_BROKEN[s3]=get; S3_BROKEN[s3r]=get
    fi
    # checks: 200 and the bytes without redirect; with it, a 307 whose Location serves the
    # bytes without our credentials, and a HEAD answered by the instance itself
    if s3_ok s3; then
        out=$(s3_curl -o "$S3D/check.body" -w '%{http_code}' "$(s3_url s3 "/v2/b/r/blobs/$S3_GET_DIGEST")" 2>&1) || true
        [[ $out == 200 ]] && cmp -s "$S3D/check.body" "$S3D/get.bin" \
            || { s3_fail s3 get "GET of the blob answered '$out' (want 200 and the same bytes)"; S3_BROKEN[s3]=get; }
    fi
    if s3_ok s3r; then
        out=$(s3_curl -D "$S3D/check.hdr" -o /dev/null -w '%{http_code}' "$(s3_url s3r "/v2/b/r/blobs/$S3_GET_DIGEST")" 2>&1) || true
        loc=$(awk 'tolower($1) == "location:" {print $2}' "$S3D/check.hdr" | tr -d '\r')
        if [[ $out != 307 || -z $loc ]]; then
            s3_fail s3r get "GET of the blob answered '$out' with Location '${loc:0:80}' (want a 307 to a presigned URL)"; S3_BROKEN[s3r]=get
        else
            out=$(curl -sS -o "$S3D/check.body" -w '%{http_code}' --max-time 60 "$loc" 2>&1) || true
            [[ $out == 200 ]] && cmp -s "$S3D/check.body" "$S3D/get.bin" \
                || { s3_fail s3r get "the presigned URL of the 307 answered '$out' (want 200 and the blob's bytes)"; S3_BROKEN[s3r]=get; }
        fi
        out=$(s3_curl --head -o /dev/null -w '%{http_code} %header{content-length}' "$(s3_url s3r "/v2/b/r/blobs/$S3_GET_DIGEST")" 2>&1) || true
        [[ $out == "200 $((S3_GET_KIB * 1024))" ]] \
            || { s3_fail s3r get "HEAD of the blob answered '$out' (want '200 $((S3_GET_KIB * 1024))': HEAD stays local)"; S3_BROKEN[s3r]=get; }
    fi
    s3_ok s3 && s3_ok s3r && log "  checks: 200 + bytes without redirect; 307 whose Location serves the bytes, HEAD 200 with redirect"
    for ((r = 1; r <= RS_RUNS; r++)); do
        for s in s3 s3r; do s3_get "$s" "$r"; done
    done
    for s in s3 s3r; do
        for f in requests rps statuses portcullis_cpu_us s3s_cpu_us; do
            [[ -s $S3D/get_$f.$s ]] && put "s3.$s.get.$f.runs" "$(paste -sd' ' "$S3D/get_$f.$s")"
        done
    done
fi

# ---------------------------------------------------------------- wrap up
for s in fs s3 s3r; do
    pid=$(s3_pid "$s")
    if [[ -n $pid ]] && ! alive "$pid"; then
        PORTCULLIS_FAILED=1
        warn "$(s3_label "$s") exited during the run; last lines of its log:"
        tail -n 20 "$S3D/portcullis-$s.log" >&9
        put "s3.$s.exit.error" "exited during the run"
    fi
    s3_stop "$s"
done
alive "$S3S_PID" || s3s_gone "before the end of the suite"
s3_stop s3s
# what Portcullis logged as WARN/ERROR during the suite, and every 5xx it answered, go
# under "Problems" (rustls's warning about the IP address wrk sends as SNI is left out:
# it is wrk's doing and harmless)
for s in fs s3 s3r; do
    f=$S3D/portcullis-$s.log
    [[ -s $f ]] || continue
    n=$(grep -E '^[0-9T:.-]+Z +(WARN|ERROR) ' "$f" | grep -vc 'Illegal SNI extension' || true)
    [[ ${n:-0} == 0 ]] || put "s3.$s.log_warnings" "$n WARN/ERROR line(s) in its log, first: $(grep -E '^[0-9T:.-]+Z +(WARN|ERROR) ' "$f" | grep -v 'Illegal SNI extension' | head -n1 | cut -c1-400)"
    n=$(grep -cE '" 5[0-9][0-9] in=' "$f" || true)
    [[ ${n:-0} == 0 ]] || put "s3.$s.5xx.log_warnings" "$n response(s) with a 5xx status, first: $(grep -E '" 5[0-9][0-9] in=' "$f" | head -n1 | cut -c1-400)"
done
mkdir -p "$RESULTS_DIR"
[[ $KEEP == 1 ]] || rm -rf "$S3D/objects" "$S3D/portcullis-data"
log "s3 suite done"
