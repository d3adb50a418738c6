# bench/suite-gc.sh: the gc suite, sourced by bench/run.sh (not run on its own).
# Garbage collection of a registry of GC_REPOS x 20 blobs (10,000 by default) written
# straight into Docker distribution's on-disk layout by bench/mkgcdata.py, on the same
# machine in one run:
#
#   pc.fs    portcullis gc -c fs.toml [--dry-run] [--delete-untagged]   (storage = "fs")
#   pc.s3    portcullis gc -c s3.toml [--dry-run] [--delete-untagged]   (storage = "s3" on
#            a local s3s-fs, fresh for each run; its CPU and peak RSS are given apart)
#   dr.fs    docker-registry garbage-collect [--dry-run] [--delete-untagged] on the same
#            fs data (the anchor)
#
# The destructive runs on S3 use the data set of GC_SMALL_REPOS x 20 blobs (stacks
# "s3-small", and "fs-small" for the same size on fs, both tools; by default the full
# set): s3s-fs answers every listing by walking its whole bucket, and an early sweep that
# listed once per blob it deleted grew with the square of the registry there; the sweep
# now deletes the keys it knows, so the full set runs (see bench/README.md).
#
# Each run is timed by /usr/bin/time (wall seconds, peak RSS, user + sys CPU); the blob
# data files are counted before and after and the count deleted must be what mkgcdata.py
# says is garbage. The data set is written afresh before every run that follows a
# destructive one. Uses run.sh's helpers, certificates, htpasswd and $RESULTS. Keys it
# writes start with "gc.". See bench/README.md for every figure.

GC_REPOS=${GC_REPOS:-$([[ $QUICK == 1 ]] && echo 100 || echo 500)}
GC_SMALL_REPOS=${GC_SMALL_REPOS:-$GC_REPOS}
GC_RUNS=${GC_RUNS:-$([[ $QUICK == 1 ]] && echo 1 || echo 3)}
GC_BIN_TIME=${GC_BIN_TIME:-/usr/bin/time}
log "== gc suite: portcullis gc (fs, S3) and docker-registry garbage-collect (fs), $GC_REPOS repositories, $GC_RUNS run(s) per case"
[[ -x $GC_BIN_TIME ]] || die "gc suite: $GC_BIN_TIME is missing (Debian package: time)"
[[ -x $S3S_FS ]] || die "gc suite: s3s-fs not found at $S3S_FS (cargo install s3s-fs@0.14.1 --features binary; or set S3S_FS=path)"

GCD=$WORK/gc
mkdir -p "$GCD"
GC_DATA=$GCD/portcullis-data            # fs: [registry] root of fs.toml, rootdirectory of registry.yml
GC_OBJ=$GCD/objects                     # s3s-fs root; the bucket is the folder registry/
GC_S3_DATA=$GC_OBJ/registry/g           # key prefix "g" (s3s-fs wants short keys)
read -r GC_OBJ_PORT GC_LISTEN_PORT < <(free_ports 2)
GC_AK=BENCH$(openssl rand -hex 8 | tr a-f A-F)
GC_SK=$(openssl rand -hex 20)
grep "^$BCRYPT_USER:" "$HTPASSWD" >"$GCD/htpasswd"
# gc never listens; the [server] section is there because the configuration needs one
BENCH_RS=$GCD BENCH_AIO_PORT=$GC_LISTEN_PORT render "$HERE/templates/allinone.toml.in" "$GCD/fs.toml"
BENCH_RS=$GCD BENCH_AIO_PORT=$GC_LISTEN_PORT BENCH_OBJ_PORT=$GC_OBJ_PORT BENCH_BUCKET=registry \
    BENCH_PREFIX=g BENCH_OBJ_KEY=$GC_AK BENCH_OBJ_SECRET=$GC_SK BENCH_REDIRECT=false \
    render "$HERE/templates/allinone-s3.toml.in" "$GCD/s3.toml"
# docker-registry's own configuration for garbage-collect: only its storage matters
cat >"$GCD/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $GC_DATA
  delete:
    enabled: true
EOF

put meta.gc.s3s_fs "$("$S3S_FS" --version 2>&1 | head -n1), $S3S_FS"
put meta.gc.runs "$GC_RUNS"

GC_PC_OK=$PORTCULLIS_BIN_OK
GC_UNTAGGED=0
if [[ $GC_PC_OK == 1 ]]; then
    put gc.status ok
    if "$PORTCULLIS" gc --help 2>&1 | grep -q -- --delete-untagged; then
        GC_UNTAGGED=1
    else
        log "  note: '$PORTCULLIS gc --help' has no --delete-untagged: its cases are skipped"
        put meta.gc.untagged "portcullis gc has no --delete-untagged: those cases were skipped"
    fi
else
    put gc.status "n/a: $PORTCULLIS_WHY"
    warn "gc suite: Portcullis cases are n/a ($PORTCULLIS_WHY); docker-registry still runs"
fi

# ---------------------------------------------------------------- data
# what each store holds now: "" (must be written afresh before the next run), full or small
GC_HOLDS_fs="" GC_HOLDS_s3=""
gc_size() { [[ $1 == *-small ]] && echo small || echo full; }
gc_generate() { # full|small: write a fresh data set into $GCD/gen, its counts into $GCD/counts-SIZE.json
    rm -rf "$GCD/gen"
    python3 "$HERE/mkgcdata.py" "$GCD/gen" --repos "$([[ $1 == small ]] && echo "$GC_SMALL_REPOS" || echo "$GC_REPOS")" \
        >"$GCD/counts-$1.json" || die "mkgcdata.py could not write the gc data set"
}
gc_fresh() { # STACK: a fresh data set of its size where that stack reads it, unless the last run left it intact
    local store=${1%-small} size
    size=$(gc_size "$1")
    local holds=GC_HOLDS_$store
    [[ ${!holds} != "$size" ]] || return 0
    gc_generate "$size"
    if [[ $store == fs ]]; then
        rm -rf "$GC_DATA"; mv "$GCD/gen" "$GC_DATA"
    else
        # s3s-fs serves <root>/<bucket>/<key> as plain files and answers LastModified with
        # the file's mtime: cp -a keeps the mtimes of 2 days ago
        rm -rf "$GC_OBJ"; mkdir -p "$GC_S3_DATA"
        cp -a "$GCD/gen/docker" "$GC_S3_DATA/" || die "could not copy the gc data set into the bucket"
        rm -rf "$GCD/gen"
    fi
    sync
    printf -v "$holds" %s "$size"
}
gc_count() { # STACK -> number of blob data files
    local v2
    v2=$([[ $1 == s3* ]] && echo "$GC_S3_DATA" || echo "$GC_DATA")/docker/registry/v2/blobs
    find "$v2" -type f -name data 2>/dev/null | wc -l
}
gc_expect() { # STACK KEY -> value from the counts of that stack's data set
    python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$GCD/counts-$(gc_size "$1").json" "$2"
}

# ---------------------------------------------------------------- s3s-fs, fresh per S3 run
GC_S3S_PID=""
gc_s3s_start() {
    RUST_LOG=${S3S_LOG:-warn} "$S3S_FS" --host 127.0.0.1 --port "$GC_OBJ_PORT" --access-key "$GC_AK" \
        --secret-key "$GC_SK" "$GC_OBJ" >>"$GCD/s3s-fs.log" 2>&1 9>&- &
    GC_S3S_PID=$!; PIDS+=("$GC_S3S_PID")
    wait_port "$GC_OBJ_PORT" "$GC_S3S_PID" s3s-fs "$GCD/s3s-fs.log" 30 \
        || die "s3s-fs ($S3S_FS) did not start on 127.0.0.1:$GC_OBJ_PORT: $WAIT_WHY"
}
gc_s3s_stop() {
    [[ -n $GC_S3S_PID ]] || return 0
    stop_pid "$GC_S3S_PID"; forget_pid "$GC_S3S_PID"; GC_S3S_PID=""
}

# ---------------------------------------------------------------- one timed run
# Runs "$@" under /usr/bin/time, with its output (stdout + stderr) stamped line by line
# with the seconds since start: a real `portcullis gc` announces an epoch and then waits
# a fixed time before marking, and that wait is the gap after the announcement.
gc_timed() { # OUT TIMEFILE CMD...
    local out=$1 tf=$2; shift 2
    bounded timeout 1800 python3 -c '
import subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
with open(out, "w") as f:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in p.stdout:
        f.write("%.3f %s" % (time.monotonic() - t0, line.decode("utf-8", "replace")))
    rc = p.wait()
    f.write("%.3f (exit status %d)\n" % (time.monotonic() - t0, rc))
sys.exit(rc)' "$out" "$GC_BIN_TIME" -f '%e %M %U %S' -o "$tf" "$@"
}

gc_wait_of() { # OUT -> seconds between the first line that mentions the epoch and the next line
    awk 'found { printf "%.3f\n", $1 - t; exit } tolower($0) ~ /epoch/ { found = 1; t = $1 }' "$1"
}

declare -A GC_BROKEN=()
gc_fail() { # CASE REASON
    warn "gc $1: $2"
    put "gc.$1.error" "$2"
    [[ $1 == dr* ]] || PORTCULLIS_FAILED=1
    GC_BROKEN[$1]=1
}

gc_run() { # CASE RUN: one timed run of one case; figures appended to $GCD/<case>.<figure>
    local c=$1 r=$2 stack store tool dry untagged cfg out tf young before after want got wall rss usr sys wait t0 t1 cmd=()
    [[ -z ${GC_BROKEN[$c]:-} ]] || return 0
    IFS=. read -r tool stack dry untagged <<<"$c"   # pc.fs.dry.u, dr.fs.real.all, ...
    store=${stack%-small}
    cfg=$GCD/$store.toml
    if [[ $tool == pc ]]; then
        cmd=("$PORTCULLIS" gc -c "$cfg")
    else
        cmd=(docker-registry garbage-collect "$GCD/registry.yml")
    fi
    [[ $dry == dry ]] && cmd+=(--dry-run)
    [[ $untagged == u ]] && cmd+=(--delete-untagged)
    gc_fresh "$stack"
    want=$(gc_expect "$stack" "$([[ $untagged == u ]] && echo garbage_delete_untagged || echo garbage_default)")
    before=$(gc_count "$stack")
    [[ $before == $(gc_expect "$stack" blobs) ]] || die "gc data set has $before blob data files, mkgcdata.py wrote $(gc_expect "$stack" blobs)"
    [[ $store == s3 ]] && { gc_s3s_start; t0=$(ticks "$GC_S3S_PID"); }
    out=$GCD/$c.$r.out; tf=$GCD/$c.$r.time
    [[ $dry == dry ]] || printf -v "GC_HOLDS_$store" %s 
    if ! gc_timed "$out" "$tf" "${cmd[@]}"; then
        tail -n 5 "$out" >&9
        [[ $store == s3 ]] && gc_s3s_stop
        gc_fail "$c" "'${cmd[*]}' failed: $(grep -v '^[0-9.]* would delete\|^[0-9.]* deleted' "$out" | tail -n 2 | cut -d' ' -f2- | tr '\n' ' ' | cut -c1-300)"
        return 0
    fi
    if [[ $store == s3 ]]; then
        t1=$(ticks "$GC_S3S_PID") || s3s_gc_gone
        echo "$(calc "($t1 - $t0) / $HZ")" >>"$GCD/$c.s3s_cpu"
        hwm_kib "$GC_S3S_PID" >>"$GCD/$c.s3s_hwm_kib"
        gc_s3s_stop
    fi
    after=$(gc_count "$stack")
    read -r wall rss usr sys < <(tail -n 1 "$tf")
    # what the tool itself says it deleted (or would)
    if [[ $tool == pc ]]; then
        # summary: "...; deleted <U> untagged manifests and <B> blobs, <size> freed"
        got=$(sed -n 's/.*\(would delete\|deleted\) [0-9]* untagged manifests and \([0-9]*\) blobs, .* freed$/\2/p' "$out" | tail -n 1)
        young=$(sed -n 's/.* \([0-9]*\) unreferenced but younger than .*/\1/p' "$out" | tail -n 1)
        [[ ${young:-0} == 0 ]] || gc_fail "$c" "$young blobs counted as younger than the grace period (mtimes not kept?)"
    else
        got=$(sed -n 's/.* blobs marked, \([0-9]*\) blobs and [0-9]* manifests eligible for deletion.*/\1/p' "$out" | tail -n 1)
    fi
    wait=$(gc_wait_of "$out")
    echo "$wall" >>"$GCD/$c.wall"; echo "$rss" >>"$GCD/$c.rss_kib"; calc "$usr + $sys" >>"$GCD/$c.cpu"
    [[ -n $wait ]] && echo "$wait" >>"$GCD/$c.wait"
    echo "$((before - after))" >>"$GCD/$c.deleted"
    echo "${got:-?}" >>"$GCD/$c.reported"
    if [[ $dry == dry ]]; then
        ((after == before)) || gc_fail "$c" "a dry run changed the blob count: $before -> $after"
    else
        ((before - after == want)) || gc_fail "$c" "deleted $((before - after)) blob data files ($before -> $after), the data set has $want garbage blobs"
    fi
    [[ ${got:-} == "$want" ]] || gc_fail "$c" "it reports ${got:-nothing} blobs to delete, the data set has $want garbage blobs"
    log "  $c (run $r): ${wall} s$([[ -n $wait ]] && echo " (of which ${wait} s after the epoch announcement)"), CPU $(calc "round($usr + $sys, 2)") s, peak RSS $((rss / 1024)) MiB$([[ $store == s3 ]] && echo ", s3s-fs CPU $(tail -n1 "$GCD/$c.s3s_cpu") s, peak RSS $(($(tail -n1 "$GCD/$c.s3s_hwm_kib") / 1024)) MiB"); blobs $before -> $after (reported ${got:-?}, want $want)"
}
s3s_gc_gone() {
    warn "s3s-fs (pid $GC_S3S_PID) is gone; last lines of $GCD/s3s-fs.log:"
    tail -n 20 "$GCD/s3s-fs.log" >&9 2>/dev/null || true
    die "s3s-fs, the local S3 server of the gc suite, exited during a run"
}

# ---------------------------------------------------------------- the cases
# CASE = tool.stack.(dry|real).(all|u): u = --delete-untagged. Full size: every dry run,
# and the destructive ones on fs; small size: the destructive ones on S3, and on fs for
# the same size next to them.
GC_CASES=()
for u in all u; do
    pc=0
    [[ $GC_PC_OK == 1 ]] && { [[ $u == all ]] || [[ $GC_UNTAGGED == 1 ]]; } && pc=1
    ((pc)) && GC_CASES+=("pc.fs.dry.$u" "pc.s3.dry.$u")
    GC_CASES+=("dr.fs.dry.$u")
    ((pc)) && GC_CASES+=("pc.fs.real.$u")
    GC_CASES+=("dr.fs.real.$u")
    ((pc)) && GC_CASES+=("pc.fs-small.real.$u" "pc.s3-small.real.$u")
    GC_CASES+=("dr.fs-small.real.$u")
done
for c in "${GC_CASES[@]}"; do put "gc.case.$c" 1; done

for size in full small; do
    gc_generate "$size"
    put "meta.gc.data.$size" "$(cat "$GCD/counts-$size.json")"
    log "data set ($size): $(python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); print("%(repositories)d repositories, %(blobs)d blobs (%(manifests)d manifests, %(untagged_manifests)d untagged), garbage %(garbage_default)d (%(garbage_delete_untagged)d with untagged), %(files)d files" % c)' "$GCD/counts-$size.json")"
done
rm -rf "$GCD/gen"

# rounds: every case once per round, in order (dry runs first in each group, so they share data)
for ((r = 1; r <= GC_RUNS; r++)); do
    for c in "${GC_CASES[@]}"; do gc_run "$c" "$r"; done
done

for c in "${GC_CASES[@]}"; do
    for f in wall wait cpu rss_kib deleted reported s3s_cpu s3s_hwm_kib; do
        [[ -s $GCD/$c.$f ]] && put "gc.$c.$f.runs" "$(paste -sd' ' "$GCD/$c.$f")"
    done
done
gc_s3s_stop
[[ $KEEP == 1 ]] || rm -rf "$GC_DATA" "$GC_OBJ"
log "gc suite done"
