# bench/suite-access.sh: the access suite, sourced by bench/run.sh (not run on its own).
# What the [access] policy costs: Portcullis all-in-one serving an authenticated GET of a
# 1 KiB blob (HTTP/1.1 keep-alive, wrk; the credentials cached after the first request,
# as for any client), once with no [access] table and once with a policy of
# ACCESS_RULES rules (50 by default) in which the caller's rule is the last one and every
# rule before it names the caller (so each is checked against the repository: the worst
# case for first-match). Both use one data folder, one certificate and one htpasswd;
# they run one after the other, alternating, ACCESS_RUNS times each, so machine noise
# falls on both. Reported: server CPU µs per request (median of the runs) and the
# ratio policy ÷ none (the goal: < 1.05). Also checked before measuring: the policy
# instance answers 403 to a user it denies and 200 to the bench user.
# Keys it writes start with "access.". Results: bench/results/access.md and access.tsv.

ACCESS_RULES=${ACCESS_RULES:-50}
ACCESS_RUNS=${ACCESS_RUNS:-$([[ $QUICK == 1 ]] && echo 2 || echo 5)}
ACCESS_SECONDS=${ACCESS_SECONDS:-$RS_SECONDS}
log "== access suite: ${ACCESS_RULES}-rule policy vs none, all-in-one 1 KiB blob GET, $ACCESS_RUNS run(s) x ${ACCESS_SECONDS}s each"
[[ $PORTCULLIS_BIN_OK == 1 ]] || die "access suite: no Portcullis binary ($PORTCULLIS_WHY)"

AD=$WORK/access
mkdir -p "$AD"
read -r AC_PORT < <(free_ports 1)
cp "$HTPASSWD" "$AD/htpasswd"
# A second user the policy denies, to check the policy is live.
htpasswd -B -C 5 -b "$AD/htpasswd" bench-denied denied-secret >/dev/null 2>&1 \
    || die "access suite: htpasswd could not add bench-denied"
BENCH_RS=$AD BENCH_AIO_PORT=$AC_PORT render "$HERE/templates/allinone.toml.in" "$AD/none.toml"
{
    cat "$AD/none.toml"
    printf '\n[access]\ndefault = "none"\n[access.groups]\nbench = ["%s", "someone-else"]\n' "$BCRYPT_USER"
    for ((i = 1; i < ACCESS_RULES; i++)); do
        # Rules that name the caller (directly or through its group) but not the
        # repository: each costs a set lookup and its globs on every request.
        if ((i % 2)); then who="\"$BCRYPT_USER\""; else who='"@bench"'; fi
        printf '\n[[access.rule]]\nrepositories = ["team-%d/**", "lib-%d/*", "app-%d"]\nwho = [%s, "other-%d"]\nactions = ["push"]\n' \
            "$i" "$i" "$i" "$who" "$i"
    done
    printf '\n[[access.rule]]\nrepositories = ["bench/**"]\nwho = ["@bench"]\nactions = ["pull"]\n'
} >"$AD/policy.toml"
"$PORTCULLIS" check -c "$AD/policy.toml" >"$AD/check.log" 2>&1 \
    || { cat "$AD/check.log" >&9; die "access suite: portcullis check refused the ${ACCESS_RULES}-rule policy"; }
put meta.access.rules "$ACCESS_RULES"
put meta.access.runs "$ACCESS_RUNS"
put meta.access.load "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${ACCESS_SECONDS}s, GET of a 1 KiB blob"

AC_AUTH=$(basic "$BCRYPT_USER")
ac_curl() { curl -sS --cacert "$CA" -H "Authorization: Basic $AC_AUTH" "$@"; }
ac_start() { # CONFIG -> AC_PID
    "$PORTCULLIS" serve -c "$1" >"$AD/serve.log" 2>&1 &
    AC_PID=$!; PIDS+=("$AC_PID")
    wait_port "$AC_PORT" "$AC_PID" portcullis "$AD/serve.log" || die "access suite: portcullis did not start ($WAIT_WHY)"
}
ac_stop() { stop_pid "$AC_PID"; forget_pid "$AC_PID"; }

# Seed bench/small with a 1 KiB blob through the policy-free instance.
head -c 1024 /dev/urandom >"$AD/small.bin"
AC_DIGEST=sha256:$(sha256sum "$AD/small.bin" | cut -c1-64)
ac_start "$AD/none.toml"
AC_BASE=https://127.0.0.1:$AC_PORT
loc=$(ac_curl -D - -o /dev/null -X POST "$AC_BASE/v2/bench/small/blobs/uploads/" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
[[ $loc == /* ]] && loc=$AC_BASE$loc
sep='?'; [[ $loc == *\?* ]] && sep='&'
code=$(ac_curl -o /dev/null -w '%{http_code}' -T "$AD/small.bin" "$loc${sep}digest=$AC_DIGEST")
[[ $code == 201 ]] || die "access suite: seeding the 1 KiB blob answered $code"
ac_stop
AC_URL=$AC_BASE/v2/bench/small/blobs/$AC_DIGEST

ac_run() { # CASE (none|policy) RUN
    local c=$1 out=$AD/wrk.$1.$2.txt t0 t1 n non2xx
    ac_start "$AD/$c.toml"
    code=$(ac_curl -o /dev/null -w '%{http_code}' "$AC_URL")
    [[ $code == 200 ]] || die "access suite ($c): the bench user's GET answered $code"
    if [[ $c == policy ]]; then
        code=$(curl -sS --cacert "$CA" -u bench-denied:denied-secret -o /dev/null -w '%{http_code}' "$AC_URL")
        [[ $code == 403 ]] || die "access suite: a user the policy denies got $code, not 403"
    fi
    t0=$(ticks "$AC_PID")
    bounded timeout $((ACCESS_SECONDS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${ACCESS_SECONDS}s" \
        -H "Authorization: Basic $AC_AUTH" "$AC_URL" >"$out" 2>&1 || { cat "$out" >&9; die "access suite: wrk failed"; }
    t1=$(ticks "$AC_PID")
    ac_stop
    n=$(awk '/ requests in /{print $1}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' "$out")
    [[ -n $n && $n -gt 0 && ${non2xx:-0} == 0 ]] || { cat "$out" >&9; die "access suite ($c): $n requests, ${non2xx:-0} non-2xx"; }
    put "access.$c.run$2.requests" "$n"
    put "access.$c.run$2.cpu_us" "$(calc "($t1 - $t0) * 1e6 / $HZ / $n")"
    log "  $c run $2: $n requests, $(calc "round(($t1 - $t0) * 1e6 / $HZ / $n, 1)") µs/req server CPU"
}
for ((r = 1; r <= ACCESS_RUNS; r++)); do
    if ((r % 2)); then ac_run none "$r"; ac_run policy "$r"; else ac_run policy "$r"; ac_run none "$r"; fi
done

python3 - "$RESULTS" "$RESULTS_DIR/access.md" <<'EOF'
import statistics, sys
rows = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if "\t" in l)
def runs(case):
    return [float(v) for k, v in rows.items() if k.startswith("access.%s.run" % case) and k.endswith(".cpu_us")]
none, policy = runs("none"), runs("policy")
mn, mp = statistics.median(none), statistics.median(policy)
pairs = sorted(p / n for p, n in zip(policy, none))
out = []
out.append("## Access policy cost (bench/run.sh --suite access)\n")
out.append("%s, commit %s, %s. %s rules, the caller's last; %s.\n" % (
    rows.get("meta.date"), rows.get("meta.commit"), rows.get("meta.host"),
    rows.get("meta.access.rules"), rows.get("meta.access.load")))
out.append("| case | server CPU µs/request (median) | runs |")
out.append("|---|---|---|")
out.append("| no [access] | %.1f | %s |" % (mn, ", ".join("%.1f" % x for x in none)))
out.append("| %s-rule policy | %.1f | %s |" % (rows.get("meta.access.rules"), mp, ", ".join("%.1f" % x for x in policy)))
out.append("")
out.append("Ratio policy ÷ none: **%.3f** (medians); per alternating pair: %s. Goal: < 1.05." % (
    mp / mn, ", ".join("%.3f" % x for x in pairs)))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
