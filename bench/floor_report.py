#!/usr/bin/env python3
"""Turn the floor suite's raw figures (bench/run.sh --suite floor) into floor.md.

    floor_report.py results.tsv > floor.md

Unlike report.py's tables, the ratios here are Portcullis ÷ the other, as the issue
states its goals: for CPU per request lower is better (goal <= 1.0 against nginx proxying
without auth, <= 2.0 against nginx serving a static file), for download MiB/s higher is
better (goal >= 1.5 against the best peer). Each row says which way is good.
"""
import statistics
import sys

PROXY_FLOOR_MAX = 1.0    # Portcullis upstream CPU/request <= nginx without auth
STATIC_FLOOR_MAX = 2.0   # Portcullis all-in-one CPU/request <= 2x nginx static
DL_PEER_MIN = 1.5        # Portcullis MiB/s >= 1.5x the best peer

R = {}
with open(sys.argv[1]) as f:
    for line in f:
        line = line.rstrip("\n")
        if "\t" in line:
            k, v = line.split("\t", 1)
            R[k] = v

LABEL = {
    "direct": "docker-registry direct (plain HTTP, no auth; the ceiling)",
    "ngx_noauth": "nginx, no auth (recipe minus auth_basic) + registry",
    "ngx_static": "nginx, static 1 KiB file (no auth)",
    "ngx": "nginx (the recipe, auth_basic)",
    "haproxy": "HAProxy (userlist auth)",
    "caddy": "Caddy (basicauth)",
    "pc_up": "**Portcullis upstream mode** (Basic auth)",
    "pc_aio": "**Portcullis all-in-one** (Basic auth)",
}
PEERS = ["ngx", "haproxy", "caddy"]


def runs(key):
    v = R.get(key)
    return [float(x) for x in v.split()] if v else []


def med(xs):
    return statistics.median(xs) if xs else None


def err(id_, case):
    return R.get("fl.%s.%s.error" % (id_, case))


def status(id_):
    return R.get("fl.%s.status" % id_, "n/a: not started")


def fmt(v, f="%.1f"):
    return "—" if v is None else f % v


def cell(id_, case, v, f="%.1f"):
    if not status(id_).startswith("ok"):
        return "n/a"
    if err(id_, case):
        return "FAIL"
    return fmt(v, f)


def verdict(ok):
    if ok is None:
        return "n/a"
    return "**PASS**" if ok else "**MISS**"


out = []
out.append("## Floor suite (bench/run.sh --suite floor)\n")
out.append("%s, %s run, commit %s. Portcullis: %s.\n" % (
    R.get("meta.date"), R.get("meta.mode"), R.get("meta.commit"), R.get("meta.portcullis", "n/a")))

# ---------------------------------------------------------------- CPU per request
CPU_CASES = [
    ("proxy_h1", "Proxy floor, `GET /v2/`, HTTP/1.1", "ngx_noauth", "pc_up", PROXY_FLOOR_MAX),
    ("static_h1", "Static floor, 1 KiB, HTTP/1.1", "ngx_static", "pc_aio", STATIC_FLOOR_MAX),
    ("static_h2", "Static floor, 1 KiB, HTTP/2", "ngx_static", "pc_aio", STATIC_FLOOR_MAX),
]
cpu_ratio = {}
for case, _, base, pc, _ in CPU_CASES:
    b = med(runs("fl.%s.%s.cpu_runs" % (case, base)))
    p = med(runs("fl.%s.%s.cpu_runs" % (case, pc)))
    ok = status(pc).startswith("ok") and not err(pc, case) and b and p is not None
    cpu_ratio[case] = (p / b) if ok else None

# ---------------------------------------------------------------- downloads
def dl(h, id_):
    xs = runs("fl.dl_%s.%s.mibs_runs" % (h, id_))
    return (max(xs) if xs else None), med(xs), xs


def best_peer(h, which):
    cands = []
    for p in PEERS:
        b, m, xs = dl(h, p)
        v = b if which == "best" else m
        if v is not None:
            cands.append((v, p))
    return max(cands) if cands else (None, None)


def dl_ratio(h, pc, which):
    if not status(pc).startswith("ok") or err(pc, "dl"):
        return None, None
    b, m, _ = dl(h, pc)
    v = b if which == "best" else m
    pv, pn = best_peer(h, which)
    if v is None or not pv:
        return None, pn
    return v / pv, pn


# ---------------------------------------------------------------- targets
out.append("### Targets\n")
out.append("| target | goal | measured | result |")
out.append("|---|---|---|---|")
for case, title, base, pc, limit in CPU_CASES:
    r = cpu_ratio[case]
    b = med(runs("fl.%s.%s.cpu_runs" % (case, base)))
    p = med(runs("fl.%s.%s.cpu_runs" % (case, pc)))
    what = "Portcullis upstream ÷ nginx without auth" if case.startswith("proxy") else "Portcullis all-in-one ÷ nginx static"
    out.append("| %s: server CPU µs/request, %s (lower is better) | ≤ %.1f | %s (%s ÷ %s µs, medians) | %s |" % (
        title, what, limit, fmt(r, "%.2f"), cell(pc, case, p), fmt(b), verdict(None if r is None else r <= limit)))
for pc, name in (("pc_up", "Portcullis upstream"), ("pc_aio", "Portcullis all-in-one")):
    for h, hn in (("h1", "HTTP/1.1"), ("h2", "HTTP/2")):
        r, peer = dl_ratio(h, pc, "best")
        rm, peer_m = dl_ratio(h, pc, "median")
        out.append("| Download, %s: MiB/s, %s ÷ the best peer (best runs; higher is better) | ≥ %.1f | %s (best peer: %s; on medians: %s, against %s) | %s |" % (
            hn, name, DL_PEER_MIN, fmt(r, "%.2f"), LABEL.get(peer, "—"), fmt(rm, "%.2f"),
            LABEL.get(peer_m, "—"), verdict(None if r is None else r >= DL_PEER_MIN)))
out.append("")

# ---------------------------------------------------------------- CPU table
out.append("### Server CPU per request\n")
out.append("%s. h2load: %s. Server CPU = utime + stime from /proc over the run ÷ requests completed "
           "(nginx: master + workers). Registry = the docker-registry behind the proxy, same window.\n" % (
               R.get("meta.fl.wrk"), R.get("meta.fl.h2load")))
out.append("| case | contender | server CPU µs/req (median) | runs | registry CPU µs/req behind (median) | req/s (median) |")
out.append("|---|---|---|---|---|---|")
for case, title, base, pc, _ in CPU_CASES:
    for id_ in (base, pc):
        c = runs("fl.%s.%s.cpu_runs" % (case, id_))
        reg = runs("fl.%s.%s.reg_runs" % (case, id_))
        rps = runs("fl.%s.%s.rps_runs" % (case, id_))
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            title, LABEL[id_], cell(id_, case, med(c)), ", ".join("%.1f" % x for x in c) or "—",
            cell(id_, case, med(reg)) if case.startswith("proxy") else "— (none)",
            cell(id_, case, med(rps), "%.0f")))
    out.append("| %s | ratio Portcullis ÷ %s | **%s** | | | |" % (
        title, "nginx", fmt(cpu_ratio[case], "%.2f")))
out.append("")
prof = [(k, v) for k, v in R.items() if k.endswith(".profiled_cpu_us")]
if prof:
    out.append("Profiled runs (perf attached, not counted above): %s. Profiles: "
               "`bench/results/profile-proxy-v2.txt`, `bench/results/profile-allinone-blob.txt`.\n" % (
                   "; ".join("%s %.1f µs/req" % (k[3:-len(".profiled_cpu_us")], float(v)) for k, v in prof)))

# ---------------------------------------------------------------- download table
out.append("### Downloads of a %s\n" % R.get("meta.fl.download", "").split(",")[0])
out.append("%s. MiB/s = curl's speed_download ÷ 2^20. Every download was checked: status 200, "
           "the full size, the protocol asked for. Server CPU = the front's utime + stime over the "
           "download (not the registry behind it).\n" % R.get("meta.fl.download"))
out.append("| target | HTTP/1.1 best | median | runs | HTTP/2 best | median | runs | server CPU s/download h1 / h2 (median) |")
out.append("|---|---|---|---|---|---|---|---|")
for id_ in ["direct"] + PEERS + ["pc_up", "pc_aio"]:
    row = [LABEL[id_]]
    for h in ("h1", "h2"):
        b, m, xs = dl(h, id_)
        if id_ == "direct" and h == "h2":
            row += ["—", "—", "(plain HTTP)"]
            continue
        row += [cell(id_, "dl", b, "%.0f"), cell(id_, "dl", m, "%.0f"), ", ".join("%.0f" % x for x in xs) or "—"]
    cpu = [fmt(med(runs("fl.dl_%s.%s.cpu_s_runs" % (h, id_))), "%.2f") for h in ("h1", "h2")]
    row.append(" / ".join(cpu))
    out.append("| " + " | ".join(row) + " |")
out.append("")

# ---------------------------------------------------------------- run
out.append("### Run\n")
meta = [
    ("mode", "meta.mode"), ("date", "meta.date"), ("commit", "meta.commit"), ("host", "meta.host"),
    ("load average at start", "meta.loadavg_start"), ("load average at end", "meta.loadavg_end"),
    ("portcullis", "meta.portcullis"), ("portcullis binary sha256 (first 16)", "meta.fl.portcullis_sha256"), ("nginx", "meta.nginx"), ("HAProxy", "meta.haproxy"),
    ("Caddy", "meta.caddy"), ("docker-registry", "meta.registry"), ("wrk", "meta.wrk_version"),
    ("h2load", "meta.h2load_version"), ("curl", "meta.curl"), ("perf", "meta.perf"),
    ("certificates", "meta.certs"), ("profiling", "meta.fl.profile"),
]
for name, k in meta:
    if k in R:
        out.append("- %s: %s" % (name, R[k]))
tls = ["%s %s" % (LABEL[i].replace("**", ""), R["fl.%s.tls" % i]) for i in LABEL if "fl.%s.tls" % i in R]
if tls:
    out.append("- negotiated TLS (openssl s_client): " + "; ".join(tls))
rss = ["%s %.1f" % (LABEL[i].replace("**", ""), int(R["fl.%s.rss_kib" % i]) / 1024) for i in LABEL if "fl.%s.rss_kib" % i in R]
if rss:
    out.append("- peak RSS MiB at the end (VmHWM; nginx summed over master + workers): " + "; ".join(rss))
sock = ["%s %s: %s" % (k.split(".")[1], k.split(".")[2], v) for k, v in R.items() if k.endswith(".socket_errors")]
if sock:
    out.append("- wrk socket errors: " + "; ".join(sock))
out.append("")

problems = ["- %s: %s" % (k[3:-len(".error")], v) for k, v in R.items() if k.startswith("fl.") and k.endswith(".error")]
problems += ["- %s: %s" % (k[3:-len(".status")], v) for k, v in R.items()
             if k.startswith("fl.") and k.endswith(".status") and not v.startswith("ok")]
if problems:
    out.append("### Problems\n")
    out += problems
    out.append("")

print("\n".join(out))
