#!/usr/bin/env python3
"""Turn bench/run.sh's raw figures (key<TAB>value lines) into the markdown report.

    report.py results.tsv > latest.md

Every ratio in the tables is oriented so that > 1 means Portcullis is better
(other/portcullis for costs and times, portcullis/other for throughputs).
The proxy suite's table is written when its figures are there (keys without the
"rs." prefix), the registry (all-in-one) suite's table when "rs.*" keys are there, the
s3 suite's tables when "s3.*" keys are there, the gc suite's when "gc.*" keys are there.
The s3 suite compares Portcullis with itself (on S3 vs on the filesystem), so its ratios
are s3 ÷ fs: lower is better there. The gc suite's ratios are docker-registry ÷
Portcullis (> 1 = Portcullis better), like the other suites'.
"""
import json
import statistics
import sys

PUSH_TOLERANCE = 0.10   # "no slower than direct" allows this much run-to-run noise
RSS_LIMIT_MIB = 32
# registry (all-in-one) suite targets, against the anchor (docker-registry alone, TLS + htpasswd)
RS_CPU_FRACTION = 0.10      # Portcullis CPU per request <= 1/10 of the anchor's
RS_TIME_FRACTION = 0.80     # push / pull time <= 0.8x the anchor's
RS_RSS_PUSHPULL_MIB = 32    # peak RSS over the push/pull runs
RS_RSS_STREAMS_MIB = 64     # peak RSS under 32 connections x 10 HTTP/2 streams
# s3 suite targets: Portcullis on S3 against Portcullis on the filesystem
S3_FACTOR = 1.5             # push / pull time and server CPU on S3 <= 1.5x on fs
S3_RSS_BIG_MIB = 64         # Portcullis on S3, peak RSS during a 1 GiB single-layer push


def load(path):
    r = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                r[k] = v
    return r


R = load(sys.argv[1])
PORT_OK = R.get("portcullis.status") == "ok"
HAVE_PROXY = "nginx.status" in R
HAVE_RS = "rs.aio.status" in R
AIO_OK = R.get("rs.aio.status") == "ok"
HAVE_S3 = "s3.status" in R
S3_OK = R.get("s3.status") == "ok"
HAVE_GC = "gc.status" in R


def num(key):
    v = R.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def runs(key):
    v = R.get(key)
    return [float(x) for x in v.split()] if v else []


def best(key, lower):
    xs = runs(key)
    return (min(xs) if lower else max(xs)) if xs else None


def median(key):
    xs = runs(key)
    return statistics.median(xs) if xs else None


def cell(proxy, value, fmt, errkey=None):
    if proxy == "portcullis" and not PORT_OK:
        return "n/a"
    if errkey and (proxy + "." + errkey + ".error") in R:
        return "FAIL"
    if value is None:
        return "n/a"
    return fmt(value)


def ratio(n, p, lower):
    if n is None or p is None or n == 0 or p == 0:
        return "–"
    r = n / p if lower else p / n
    return "%.2f×" % r if r < 10 else "%.1f×" % r


us = lambda v: "%.0f" % v
rate = lambda v: "%.0f" % v
mib = lambda v: "%.1f" % v
sec = lambda v: "%.2f" % v

rows = []


def row(label, key_of, fmt, lower, errkey=None, direct=None, value=num):
    n = value(key_of("nginx"))
    p = value(key_of("portcullis")) if PORT_OK else None
    d = "" if direct is None else direct
    rows.append("| %s | %s | %s | %s | %s | %s |" % (
        label, cell("nginx", n, fmt, errkey), cell("portcullis", p, fmt, errkey),
        ratio(n, p, lower) if PORT_OK else "–", "lower" if lower else "higher", d))


def section(title):
    rows.append("| **%s** | | | | | |" % title)


CASES_H1 = [("v2_bcrypt", "GET /v2/, bcrypt user"), ("v2_apr1", "GET /v2/, apr1 user"),
            ("blob1k_bcrypt", "GET 1 KiB blob, bcrypt user")]
CASES_H2 = [("v2_bcrypt", "GET /v2/, bcrypt user"), ("blob1k_bcrypt", "GET 1 KiB blob, bcrypt user")]

section("HTTP/1.1 keep-alive, wrk (%s)" % R.get("meta.wrk", "?"))
for c, label in CASES_H1:
    row("proxy CPU µs/request, " + label, lambda p, c=c: "%s.h1.%s.cpu_us" % (p, c), us, True, "h1." + c)
for c, label in CASES_H1:
    row("registry CPU µs/request behind the proxy, " + label,
        lambda p, c=c: "%s.h1.%s.reg_cpu_us" % (p, c), us, True, "h1." + c)
for c, label in CASES_H1:
    row("requests/s, " + label, lambda p, c=c: "%s.h1.%s.rps" % (p, c), rate, False, "h1." + c)

section("HTTP/2, h2load (%s)" % R.get("meta.h2load", "?"))
for c, label in CASES_H2:
    row("requests/s, " + label, lambda p, c=c: "%s.h2.%s.rps" % (p, c), rate, False, "h2." + c)
for c, label in CASES_H2:
    row("proxy CPU µs/request, " + label, lambda p, c=c: "%s.h2.%s.cpu_us" % (p, c), us, True, "h2." + c)
for c, label in CASES_H2:
    row("registry CPU µs/request behind the proxy, " + label,
        lambda p, c=c: "%s.h2.%s.reg_cpu_us" % (p, c), us, True, "h2." + c)

section("Blob download, %s" % R.get("meta.download", "?"))
dbest = best("direct.dl.runs", lower=False)
dmed = median("direct.dl.runs")
row("MiB/s, best run", lambda p: p + ".dl.runs", rate, False, "dl",
    direct=rate(dbest) if dbest else "n/a", value=lambda k: best(k, lower=False))
row("MiB/s, median run", lambda p: p + ".dl.runs", rate, False, "dl",
    direct=rate(dmed) if dmed else "n/a", value=median)

section("Push with skopeo, %s" % R.get("meta.push", "?"))
pbest = best("direct.push.runs", lower=True)
row("seconds, best run", lambda p: p + ".push.runs", sec, True, "push",
    direct=sec(pbest) if pbest else "n/a", value=lambda k: best(k, lower=True))

section("Memory, after all of the above")
kib2mib = lambda k: None if num(k) is None else num(k) / 1024
row("proxy peak RSS MiB (VmHWM; nginx: master + workers summed)",
    lambda p: p + ".rss_kib", mib, True, value=kib2mib)
reg_rss = kib2mib("registry.rss_kib")
rows.append("| registry peak RSS MiB (the one shared upstream) | | | | lower | %s |" %
            (mib(reg_rss) if reg_rss is not None else "n/a"))

# ------------------------------------------------------------------ targets
targets = []


def target(name, ok, detail):
    verdict = "n/a" if ok is None else ("PASS" if ok is True else ("MISS" if ok is False else ok))
    targets.append("| %s | %s | %s |" % (name, verdict, detail))


def fmt_or_na(v, f):
    return "n/a" if v is None else f(v)


for c, who in (("v2_bcrypt", "bcrypt"), ("v2_apr1", "apr1")):
    n = num("nginx.h1.%s.cpu_us" % c)
    p = num("portcullis.h1.%s.cpu_us" % c) if PORT_OK else None
    ok = None if n is None or p is None else p <= n / 10
    target("Portcullis CPU per authenticated request ≤ 1/10 of nginx's (%s user, GET /v2/, HTTP/1.1)" % who, ok,
           "portcullis %s µs vs nginx %s µs (limit %s µs)" % (
               fmt_or_na(p, us), fmt_or_na(n, us), fmt_or_na(None if n is None else n / 10, us)))

n = best("nginx.dl.runs", lower=False)
p = best("portcullis.dl.runs", lower=False) if PORT_OK else None
target("blob download MiB/s ≥ 1.5× nginx's (best of runs)",
       None if n is None or p is None else p >= 1.5 * n,
       "portcullis %s MiB/s vs nginx %s MiB/s (needs %s)" % (
           fmt_or_na(p, rate), fmt_or_na(n, rate), fmt_or_na(None if n is None else 1.5 * n, rate)))

d = best("direct.push.runs", lower=True)
p = best("portcullis.push.runs", lower=True) if PORT_OK else None
if d is None or p is None:
    ok = None
elif p <= d:
    ok = True
elif p <= d * (1 + PUSH_TOLERANCE):
    ok = "PASS (within %d%% noise)" % (PUSH_TOLERANCE * 100)
else:
    ok = False
target("push no slower than direct to the registry (best of runs)", ok,
       "portcullis %s s vs direct %s s%s" % (
           fmt_or_na(p, sec), fmt_or_na(d, sec),
           "" if d is None or p is None else " (%+.0f%%)" % ((p / d - 1) * 100)))

p = kib2mib("portcullis.rss_kib") if PORT_OK else None
target("Portcullis peak RSS ≤ %d MiB" % RSS_LIMIT_MIB, None if p is None else p <= RSS_LIMIT_MIB,
       "%s MiB" % fmt_or_na(p, mib))

# ------------------------------------------------------------------ registry (all-in-one) suite
# Stacks: "native" = the anchor (docker-registry alone, TLS + htpasswd), "nginx" = nginx +
# docker-registry (parts summed), "aio" = Portcullis all-in-one.
RS_PARTS = {"native": ["registry"], "nginx": ["nginx", "registry"], "aio": ["portcullis"]}
rs_rows = []
rs_targets = []


def rs_runs(stack, what):
    return runs("rs.%s.%s.runs" % (stack, what))


def rs_value(stack, suffix, how):
    """how: 'num' for rs.STACK.SUFFIX, 'best' / 'median' for a .runs list, 'mib' for KiB -> MiB."""
    if stack == "aio" and not AIO_OK:
        return None
    if how in ("best", "median"):
        xs = rs_runs(stack, suffix)
        if not xs:
            return None
        return min(xs) if how == "best" else statistics.median(xs)
    v = num("rs.%s.%s" % (stack, suffix))
    if v is not None and how == "mib":
        v /= 1024
    return v


def rs_cell(stack, value, fmt, errkey, parts_suffix=None, how="num"):
    if stack == "aio" and not AIO_OK:
        return "n/a"
    if errkey and any(("rs.%s.%s.error" % (stack, e)) in R for e in errkey.split("|")):
        return "FAIL"
    if value is None:
        return "n/a"
    text = fmt(value)
    if parts_suffix and len(RS_PARTS[stack]) > 1:
        ps = [rs_value(stack, parts_suffix.replace("@", p), how) for p in RS_PARTS[stack]]
        if all(x is not None for x in ps):
            text += " (%s)" % " + ".join(fmt(x) for x in ps)
    return text


def rs_row(label, suffix, fmt, lower, errkey, how="num", parts_suffix=None):
    """suffix: key after rs.STACK.; parts_suffix: the same with @ for the part name."""
    a, n, p = (rs_value(s, suffix, how) for s in ("native", "nginx", "aio"))
    rs_rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
        label, rs_cell("native", a, fmt, errkey), rs_cell("nginx", n, fmt, errkey, parts_suffix, how),
        rs_cell("aio", p, fmt, errkey), ratio(a, p, lower), ratio(n, p, lower), "lower" if lower else "higher"))


def rs_section(title):
    rs_rows.append("| **%s** | | | | | | |" % title)


RS_CASES = [("head", "HEAD manifest by tag"), ("blob", "GET 1 KiB blob")]
if HAVE_RS:
    for proto, title in (("h1", "HTTP/1.1 keep-alive (%s)" % R.get("meta.rs.h1", "?")),
                         ("h2", "HTTP/2, %s" % R.get("meta.rs.h2", "?"))):
        rs_section(title)
        for c, label in RS_CASES:
            rs_row("server CPU µs/request, " + label, "%s.%s.cpu_us" % (proto, c), us, True, "%s.%s" % (proto, c),
                   parts_suffix="%s.%s.@_cpu_us" % (proto, c))
        for c, label in RS_CASES:
            rs_row("requests/s, " + label, "%s.%s.rps" % (proto, c), rate, False, "%s.%s" % (proto, c))
    rs_section("skopeo push, then pull into a fresh oci: dir, %s (best run)" % R.get("meta.rs.push", "?"))
    rs_row("push seconds", "push", sec, True, "push|pull", how="best")
    rs_row("pull seconds", "pull", sec, True, "push|pull", how="best")
    rs_row("server CPU seconds per push (median run)", "push_cpu", sec, True, "push|pull", how="median")
    rs_row("server CPU seconds per pull (median run)", "pull_cpu", sec, True, "push|pull", how="median")
    rs_row("skopeo's own CPU seconds per push (client side, context)", "push_client", sec, True, "push|pull", how="median")
    rs_row("skopeo's own CPU seconds per pull (client side, context)", "pull_client", sec, True, "push|pull", how="median")
    rs_row("peak RSS MiB over the push/pull runs (fresh processes)", "pp.hwm_kib", mib, True, "push|pull|restart",
           how="mib", parts_suffix="pp.@_hwm_kib")
    rs_section("%d connections × %d HTTP/2 streams, %s, fresh processes" % (
        int(num("meta.rs.rss_clients") or 32), int(num("meta.rs.rss_streams") or 10), R.get("meta.rs.rss", "?")))
    for c, label in (("blob", "GET 1 KiB blob"), ("head", "HEAD manifest by tag")):
        rs_row("peak RSS MiB, " + label, "rss.%s.hwm_kib" % c, mib, True, "rss.%s|h2.%s|restart" % (c, c),
               how="mib", parts_suffix="rss.%s.@_hwm_kib" % c)
    for c, label in (("blob", "GET 1 KiB blob"), ("head", "HEAD manifest by tag")):
        rs_row("server CPU µs/request, " + label, "rss.%s.cpu_us" % c, us, True, "rss.%s|h2.%s|restart" % (c, c),
               parts_suffix="rss.%s.@_cpu_us" % c)
    for c, label in (("blob", "GET 1 KiB blob"), ("head", "HEAD manifest by tag")):
        rs_row("requests/s, " + label, "rss.%s.rps" % c, rate, False, "rss.%s|h2.%s|restart" % (c, c))


def rs_target(name, ok, detail):
    verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
    rs_targets.append("| %s | %s | %s |" % (name, verdict, detail))


if HAVE_RS:
    for proto, pname in (("h1", "HTTP/1.1"), ("h2", "HTTP/2")):
        for c, label in RS_CASES:
            a = rs_value("native", "%s.%s.cpu_us" % (proto, c), "num")
            p = rs_value("aio", "%s.%s.cpu_us" % (proto, c), "num")
            if ("rs.aio.%s.%s.error" % (proto, c)) in R:
                p = None
            rs_target("Portcullis CPU per request ≤ 1/10 of the anchor's (%s, %s)" % (label, pname),
                      None if a is None or p is None else p <= a * RS_CPU_FRACTION,
                      "portcullis %s µs vs anchor %s µs (limit %s µs)%s" % (
                          fmt_or_na(p, us), fmt_or_na(a, us), fmt_or_na(None if a is None else a * RS_CPU_FRACTION, us),
                          "" if a is None or p is None else "; anchor ÷ portcullis = %s" % ratio(a, p, True)))
    for what in ("push", "pull"):
        a = rs_value("native", what, "best")
        p = rs_value("aio", what, "best")
        rs_target("%s time ≤ %.1f× the anchor's (best of runs)" % (what, RS_TIME_FRACTION),
                  None if a is None or p is None else p <= a * RS_TIME_FRACTION,
                  "portcullis %s s vs anchor %s s (limit %s s)%s" % (
                      fmt_or_na(p, sec), fmt_or_na(a, sec), fmt_or_na(None if a is None else a * RS_TIME_FRACTION, sec),
                      "" if a is None or p is None else "; portcullis ÷ anchor = %.2f" % (p / a)))
    p = rs_value("aio", "pp.hwm_kib", "mib")
    rs_target("Portcullis peak RSS over the push/pull runs ≤ %d MiB" % RS_RSS_PUSHPULL_MIB,
              None if p is None else p <= RS_RSS_PUSHPULL_MIB, "%s MiB" % fmt_or_na(p, mib))
    ps = [rs_value("aio", "rss.%s.hwm_kib" % c, "mib") for c in ("blob", "head")]
    ps = [x for x in ps if x is not None]
    p = max(ps) if ps else None
    rs_target("Portcullis peak RSS under %s ≤ %d MiB (higher of GET blob and HEAD manifest)" % (
        R.get("meta.rs.rss", "?"), RS_RSS_STREAMS_MIB),
              None if p is None else p <= RS_RSS_STREAMS_MIB, "%s MiB" % fmt_or_na(p, mib))

# ------------------------------------------------------------------ s3 suite
# Stacks: "fs" = Portcullis all-in-one on the filesystem, "s3" = the same on S3 (s3s-fs),
# "s3r" = on S3 with redirect = true (blob GETs only).
s3_rows = []
s3_get_rows = []
s3_targets = []


def s3_err(stack, cases):
    """Did any of these cases fail on STACK? A failed start or seed fails every case."""
    return any(("s3.%s.%s.error" % (stack, c)) in R for c in cases.split("|") + ["start", "seed"])


def s3_value(stack, suffix, how="num"):
    """how: 'num' for s3.STACK.SUFFIX, 'median' for a .runs list, 'mib' for KiB -> MiB."""
    if not S3_OK:
        return None
    if how == "median":
        xs = runs("s3.%s.%s.runs" % (stack, suffix))
        return statistics.median(xs) if xs else None
    v = num("s3.%s.%s" % (stack, suffix))
    if v is not None and how == "mib":
        v /= 1024
    return v


def s3_cell(stack, value, fmt, errkey, extra=None):
    if not S3_OK:
        return "n/a"
    if errkey and s3_err(stack, errkey):
        return "FAIL"
    if value is None:
        return "n/a"
    return fmt(value) + (extra or "")


def s3_ratio(a, b):
    """a ÷ b, as the s3 suite's ratios are (s3 ÷ fs, redirect ÷ no redirect)."""
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return "%.2f×" % r if r < 10 else "%.1f×" % r


def s3_row(label, fs, s3, fmt, errkey, s3_extra=None, ratio_=True):
    s3_rows.append("| %s | %s | %s | %s |" % (
        label, s3_cell("fs", fs, fmt, errkey), s3_cell("s3", s3, fmt, errkey, s3_extra),
        s3_ratio(s3, fs) if ratio_ and not s3_err("fs", errkey) and not s3_err("s3", errkey) else "–"))


def s3_section(title):
    s3_rows.append("| **%s** | | | |" % title)


if HAVE_S3:
    s3_section("skopeo push, then pull into a fresh oci: dir, %s (median run)" % R.get("meta.s3.push", "?"))
    for what in ("push", "pull"):
        s3_row("%s seconds" % what, s3_value("fs", what, "median"), s3_value("s3", what, "median"), sec, "push|pull")
    for what in ("push", "pull"):
        p = s3_value("s3", what + "_portcullis_cpu", "median")
        o = s3_value("s3", what + "_s3s_cpu", "median")
        s3_row("server CPU seconds per %s (on S3: Portcullis + s3s-fs)" % what, s3_value("fs", what + "_cpu", "median"),
               s3_value("s3", what + "_cpu", "median"), sec, "push|pull",
               s3_extra=None if p is None or o is None else " (%s + %s)" % (sec(p), sec(o)))
        s3_row("Portcullis CPU seconds per %s (alone)" % what, s3_value("fs", what + "_portcullis_cpu", "median"),
               p, sec, "push|pull")
    for what in ("push", "pull"):
        s3_row("skopeo's own CPU seconds per %s (client side, context)" % what,
               s3_value("fs", what + "_client", "median"), s3_value("s3", what + "_client", "median"), sec, "push|pull")
    o = s3_value("s3", "pp.s3s_hwm_kib", "mib")
    s3_row("Portcullis peak RSS MiB over the seed and push/pull runs", s3_value("fs", "pp.hwm_kib", "mib"),
           s3_value("s3", "pp.hwm_kib", "mib"), mib, "push|pull|seed",
           s3_extra=None if o is None else " (s3s-fs: %s)" % mib(o))
    s3_section("push of a %s MB single-layer image (%s), fresh processes" % (
        "%.0f" % (num("meta.s3.big_bytes") / 1e6) if num("meta.s3.big_bytes") else "?", R.get("meta.s3.big", "?")))
    s3_row("Portcullis peak RSS MiB (VmHWM) during the push", s3_value("fs", "big.hwm_kib", "mib"),
           s3_value("s3", "big.hwm_kib", "mib"), mib, "big")
    s3_row("s3s-fs peak RSS MiB during the push (context)", None, s3_value("s3", "big.s3s_hwm_kib", "mib"), mib, "big",
           ratio_=False)
    s3_row("push seconds", s3_value("fs", "big.seconds"), s3_value("s3", "big.seconds"), sec, "big")
    p, o = s3_value("s3", "big.portcullis_cpu_s"), s3_value("s3", "big.s3s_cpu_s")
    s3_row("server CPU seconds (on S3: Portcullis + s3s-fs)", s3_value("fs", "big.cpu_s"), s3_value("s3", "big.cpu_s"),
           sec, "big", s3_extra=None if p is None or o is None else " (%s + %s)" % (sec(p), sec(o)))

    def get_row(label, suffix, fmt, ratio_=True):
        a, b = s3_value("s3", suffix, "median"), s3_value("s3r", suffix, "median")
        s3_get_rows.append("| %s | %s | %s | %s |" % (
            label, s3_cell("s3", a, fmt, "get|start|seed"), s3_cell("s3r", b, fmt, "get|start"),
            s3_ratio(b, a) if ratio_ and not s3_err("s3", "get") and not s3_err("s3r", "get") else "–"))

    get_row("Portcullis (instance) CPU µs per blob GET (median run)", "get.portcullis_cpu_us", us)
    get_row("s3s-fs CPU µs per blob GET (median run)", "get.s3s_cpu_us", us)
    get_row("requests/s (median run; wrk on the same cores, indicative)", "get.rps", rate)
    s3_get_rows.append("| statuses per run (status:count) | %s | %s | |" % (
        R.get("s3.s3.get.statuses.runs", "n/a"), R.get("s3.s3r.get.statuses.runs", "n/a")))

    def s3_target(name, a, b, limit, unit, fmt):
        ok = None if a is None or b is None else a <= b * limit
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        s3_targets.append("| %s | %s | %s |" % (name, verdict, "on S3 %s %s vs on fs %s %s%s" % (
            fmt_or_na(a, fmt), unit, fmt_or_na(b, fmt), unit,
            "" if a is None or b is None or b == 0 else "; s3 ÷ fs = %.2f" % (a / b))))

    for what in ("push", "pull"):
        bad = s3_err("fs", "push|pull") or s3_err("s3", "push|pull")
        s3_target("%s time on S3 ≤ %.1f× on fs (median of runs)" % (what, S3_FACTOR),
                  None if bad else s3_value("s3", what, "median"), s3_value("fs", what, "median"), S3_FACTOR, "s", sec)
    for what in ("push", "pull"):
        bad = s3_err("fs", "push|pull") or s3_err("s3", "push|pull")
        s3_target("server CPU per %s on S3 (Portcullis + s3s-fs) ≤ %.1f× on fs (median of runs)" % (what, S3_FACTOR),
                  None if bad else s3_value("s3", what + "_cpu", "median"), s3_value("fs", what + "_cpu", "median"),
                  S3_FACTOR, "s", sec)
    p = None if s3_err("s3", "big") else s3_value("s3", "big.hwm_kib", "mib")
    s3_targets.append("| Portcullis on S3, peak RSS during the %s push ≤ %d MiB | %s | %s MiB (on fs: %s MiB) |" % (
        R.get("meta.s3.big", "?"), S3_RSS_BIG_MIB, "n/a" if p is None else ("PASS" if p <= S3_RSS_BIG_MIB else "MISS"),
        fmt_or_na(p, mib), fmt_or_na(None if s3_err("fs", "big") else s3_value("fs", "big.hwm_kib", "mib"), mib)))

# ------------------------------------------------------------------ gc suite
gc_rows, gc_cmp = [], []
if HAVE_GC:
    GC_DATA = {}
    for size in ("full", "small"):
        try:
            GC_DATA[size] = json.loads(R.get("meta.gc.data." + size, ""))
        except ValueError:
            GC_DATA[size] = {}
    GC_CASES = [k[len("gc.case."):] for k in R if k.startswith("gc.case.")]

    def gc_parts(case):
        tool, stack, dry, u = case.split(".")
        return tool, stack, dry == "dry", u == "u"

    def gc_med(case, fig):
        xs = runs("gc.%s.%s.runs" % (case, fig))
        return statistics.median(xs) if xs else None

    def gc_label(case):
        tool, stack, dry, u = gc_parts(case)
        name = "portcullis gc" if tool == "pc" else "docker-registry garbage-collect"
        flags = (" --dry-run" if dry else "") + (" --delete-untagged" if u else "")
        where = "S3 (s3s-fs)" if stack.startswith("s3") else "fs"
        return "`%s%s`, %s%s" % (name, flags, where, " (anchor)" if tool == "dr" else "")

    def gc_size_of(case):
        return "small" if gc_parts(case)[1].endswith("-small") else "full"

    def gc_fmt(v, f):
        return "n/a" if v is None else f(v)

    def gc_wall_net(case):
        w, t = gc_med(case, "wall"), gc_med(case, "wait")
        return None if w is None else (w - t if t is not None else w)

    for size in ("full", "small"):
        d = GC_DATA.get(size, {})
        group = [c for c in GC_CASES if gc_size_of(c) == size]
        if not group:
            continue
        gc_rows.append("| **%s blobs in %s repositories (garbage: %s; %s)** | | | | | | |" % (
            "{:,}".format(d.get("blobs", 0)), d.get("repositories", "?"),
            "{:,}, with --delete-untagged {:,}".format(d.get("garbage_default", 0), d.get("garbage_delete_untagged", 0)),
            "every dry run and the fs runs" if size == "full" else "the destructive S3 runs, and fs at the same size"))
        for c in group:
            tool, stack, dry, u = gc_parts(c)
            want = d.get("garbage_delete_untagged" if u else "garbage_default")
            if ("gc.%s.error" % c) in R:
                gc_rows.append("| %s | FAIL | | | | | %s |" % (gc_label(c), R["gc.%s.error" % c][:120]))
                continue
            if tool == "pc" and R.get("gc.status") != "ok":
                gc_rows.append("| %s | n/a | | | | | |" % gc_label(c))
                continue
            wall, wait = gc_med(c, "wall"), gc_med(c, "wait")
            rss = gc_med(c, "rss_kib")
            s3s = ""
            if stack.startswith("s3"):
                s3s = "%s s, %s MiB" % (gc_fmt(gc_med(c, "s3s_cpu"), lambda v: "%.2f" % v),
                                        gc_fmt(gc_med(c, "s3s_hwm_kib"), lambda v: "%.1f" % (v / 1024)))
            deleted, reported = gc_med(c, "deleted"), R.get("gc.%s.reported.runs" % c, "").split()
            gc_rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                gc_label(c), gc_fmt(wall, lambda v: "%.2f" % v),
                "–" if wait is None else "%.2f" % wait,
                gc_fmt(gc_med(c, "cpu"), lambda v: "%.2f" % v),
                gc_fmt(rss, lambda v: "%.1f" % (v / 1024)), s3s or "–",
                "%s (says %s; garbage: %s)" % (gc_fmt(deleted, lambda v: "%d" % v),
                                               reported[-1] if reported else "?", want)))
    # Portcullis against docker-registry on the same fs data, case by case
    for c in GC_CASES:
        tool, stack, dry, u = gc_parts(c)
        if tool != "pc" or not stack.startswith("fs"):
            continue
        a = "dr" + c[2:]
        if a not in GC_CASES or ("gc.%s.error" % c) in R or ("gc.%s.error" % a) in R:
            continue

        def rat(fig, f=gc_med):
            p, o = f(c, fig) if fig else f(c), f(a, fig) if fig else f(a)
            return "n/a" if not p or o is None else "%.2f×" % (o / p)
        gc_cmp.append("| %s, %s blobs | %s | %s | %s |" % (
            gc_label(c).replace("`portcullis gc", "`gc").replace(", fs", ""),
            "{:,}".format(GC_DATA.get(gc_size_of(c), {}).get("blobs", 0)),
            rat(None, gc_wall_net), rat("cpu"), rat("rss_kib")))

# ------------------------------------------------------------------ output
out = []
out.append("# Portcullis vs the nginx + registry:2 recipe (%s run, %s)" % (R.get("meta.mode", "?"), R.get("meta.date", "?")))
out.append("")
if HAVE_PROXY:
    if not PORT_OK:
        out.append("**Portcullis columns are n/a:** %s" % R.get("portcullis.status", "not run")[len("n/a: "):])
        out.append("")
    out.append("Ratio column: > 1 means Portcullis is better (nginx ÷ portcullis where lower is better, "
               "portcullis ÷ nginx where higher is better). Both proxies front the same Debian docker-registry.")
    out.append("")
    out.append("| measure | nginx + registry | portcullis + registry | ratio (>1 = Portcullis better) | better | registry direct |")
    out.append("|---|---:|---:|---:|---|---:|")
    out.extend(rows)
    out.append("")
    out.append("## Targets")
    out.append("")
    out.append("| target | result | figures |")
    out.append("|---|---|---|")
    out.extend(targets)
    out.append("")
if HAVE_RS:
    out.append("## All-in-one: Portcullis with its bundled registry vs docker-registry alone vs nginx + docker-registry")
    out.append("")
    if not AIO_OK:
        out.append("**Portcullis all-in-one column is n/a:** %s" % R.get("rs.aio.status", "not run")[len("n/a: "):])
        out.append("")
    out.append("Three complete registries behind TLS + Basic auth, same certificate, same htpasswd "
               "(bcrypt cost 5 user only), each measured the same way. **Anchor** = Debian docker-registry "
               "alone with its own TLS + htpasswd. **nginx + registry** = the recipe; its CPU and RSS are "
               "nginx (master + workers) + registry summed, the two parts in brackets. "
               "Ratios: > 1 means Portcullis is better (other ÷ portcullis where lower is better, "
               "portcullis ÷ other where higher is better). Server CPU counts every process of the stack.")
    out.append("")
    out.append("| measure | anchor: registry TLS + htpasswd | nginx + registry (nginx + registry) | portcullis all-in-one "
               "| ratio vs anchor (>1 = Portcullis better) | ratio vs nginx + registry | better |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    out.extend(rs_rows)
    out.append("")
    out.append("### Targets (all-in-one)")
    out.append("")
    out.append("| target | result | figures |")
    out.append("|---|---|---|")
    out.extend(rs_targets)
    out.append("")
if HAVE_S3:
    out.append("## Portcullis all-in-one on S3 (s3s-fs) vs on the filesystem")
    out.append("")
    if not S3_OK:
        out.append("**The s3 suite's columns are n/a:** %s" % R.get("s3.status", "not run")[len("n/a: "):])
        out.append("")
    out.append("The same Portcullis binary twice, behind TLS + Basic auth with the same certificate and htpasswd "
               "(bcrypt cost 5 user): `storage = \"fs\"` and `storage = \"s3\"` on a local s3s-fs "
               "(redirect = false). On S3, server CPU is Portcullis + s3s-fs (the two parts in brackets). "
               "**Ratio = s3 ÷ fs: lower is better, the target is ≤ %.1f×.**" % S3_FACTOR)
    out.append("")
    out.append("| measure | portcullis on fs | portcullis on S3 (s3s-fs) | s3 ÷ fs |")
    out.append("|---|---:|---:|---:|")
    out.extend(s3_rows)
    out.append("")
    out.append("### Blob GET on S3: redirect = false vs redirect = true (%s)" % R.get("meta.s3.get", "?"))
    out.append("")
    out.append("Both instances on the same bucket and key prefix. With redirect = true the instance answers "
               "307 to a presigned URL; wrk does not follow it, so the figures are the instance's cost of "
               "answering the 307 (auth, GET of the repository's link and HEAD of the blob on S3, presigning). "
               "Ratio = redirect ÷ no redirect.")
    out.append("")
    out.append("| measure | redirect = false | redirect = true | true ÷ false |")
    out.append("|---|---:|---:|---:|")
    out.extend(s3_get_rows)
    out.append("")
    out.append("### Targets (s3)")
    out.append("")
    out.append("| target | result | figures |")
    out.append("|---|---|---|")
    out.extend(s3_targets)
    out.append("")
if HAVE_GC:
    out.append("## Garbage collection: portcullis gc (fs, S3) vs docker-registry garbage-collect (fs)")
    out.append("")
    if R.get("gc.status") != "ok":
        out.append("**Portcullis rows are n/a:** %s" % R.get("gc.status", "not run")[len("n/a: "):])
        out.append("")
    out.append("Each run under `/usr/bin/time` (median of %s run(s)): wall seconds, user + sys CPU seconds and "
               "peak RSS of the collector's process; on S3 also s3s-fs's CPU over the run and its peak RSS "
               "(a fresh s3s-fs per run). A destructive run starts on a freshly written data set. "
               "\"Epoch wait\" = the gap after the line that announces the epoch (a real `portcullis gc` waits "
               "before marking), included in the wall time. Deleted = blob data files before − after; "
               "\"says\" = the count the collector prints; garbage = what the data set holds (they must agree, "
               "else FAIL)." % R.get("meta.gc.runs", "?"))
    out.append("")
    out.append("| run | wall s | of which epoch wait s | CPU s (user + sys) | peak RSS MiB | s3s-fs CPU s, peak RSS | blobs deleted |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    out.extend(gc_rows)
    out.append("")
    if gc_cmp:
        out.append("### Portcullis vs docker-registry on the same fs data (docker-registry ÷ Portcullis, > 1 = Portcullis better)")
        out.append("")
        out.append("| run | wall time (without the epoch wait) | CPU | peak RSS |")
        out.append("|---|---:|---:|---:|")
        out.extend(gc_cmp)
        out.append("")
    if "meta.gc.untagged" in R:
        out.append("Note: %s." % R["meta.gc.untagged"])
        out.append("")
out.append("## Run")
out.append("")
for k, label in (("meta.host", "machine"), ("meta.loadavg_start", "load average at start"),
                 ("meta.loadavg_end", "load average at end"), ("meta.commit", "portcullis commit"),
                 ("meta.portcullis", "portcullis binary"), ("meta.nginx", "nginx"),
                 ("meta.registry", "docker-registry"), ("meta.skopeo", "skopeo"),
                 ("meta.certs", "certificates"), ("meta.push_bytes", "pushed image bytes")):
    if k in R:
        out.append("- %s: %s" % (label, R[k]))
for t in ("direct", "nginx", "portcullis"):
    if R.get(t + ".dl.runs"):
        out.append("- download MiB/s, %s: %s" % (t, " ".join("%.0f" % x for x in runs(t + ".dl.runs"))))
for t in ("direct", "nginx", "portcullis"):
    if R.get(t + ".push.runs"):
        out.append("- push seconds, %s: %s" % (t, " ".join("%.2f" % x for x in runs(t + ".push.runs"))))
for t in ("nginx", "portcullis"):
    if t + ".tls" in R:
        out.append("- TLS negotiated with %s (h2load): %s" % (t, R[t + ".tls"]))
if "nginx.rss_detail" in R:
    out.append("- nginx peak RSS: %s" % R["nginx.rss_detail"])
for t in ("nginx", "portcullis", "registry"):
    if t + ".cpu_total_s" in R:
        out.append("- %s CPU over the whole run: %.1f s" % (t, float(R[t + ".cpu_total_s"])))
if HAVE_RS:
    if "meta.rs.push_bytes" in R:
        out.append("- registry suite, pushed image bytes: %s" % R["meta.rs.push_bytes"])
    names = {"native": "anchor", "nginx": "nginx + registry", "aio": "portcullis all-in-one"}
    for what in ("push", "pull"):
        for st in ("native", "nginx", "aio"):
            if R.get("rs.%s.%s.runs" % (st, what)):
                out.append("- registry suite, %s seconds, %s: %s" % (
                    what, names[st], " ".join("%.2f" % x for x in rs_runs(st, what))))
    for st in ("native", "nginx", "aio"):
        if "rs.%s.tls" % st in R:
            out.append("- registry suite, TLS negotiated with %s (h2load): %s" % (names[st], R["rs.%s.tls" % st]))
    if "meta.rs.perf" in R:
        out.append("- registry suite: %s" % R["meta.rs.perf"])
if HAVE_S3:
    if "meta.s3.s3s_fs" in R:
        out.append("- s3 suite, S3 server: %s" % R["meta.s3.s3s_fs"])
    if "meta.s3.push_bytes" in R:
        out.append("- s3 suite, pushed image bytes: %s (large image: %s)" % (
            R["meta.s3.push_bytes"], R.get("meta.s3.big_bytes", "n/a")))
    for what, label in (("push", "push seconds"), ("pull", "pull seconds"), ("push_cpu", "server CPU s per push"),
                        ("pull_cpu", "server CPU s per pull"), ("push_portcullis_cpu", "Portcullis CPU s per push"),
                        ("pull_portcullis_cpu", "Portcullis CPU s per pull")):
        for st, name in (("fs", "on fs"), ("s3", "on S3")):
            if R.get("s3.%s.%s.runs" % (st, what)):
                out.append("- s3 suite, %s, %s: %s" % (label, name, " ".join(
                    "%.2f" % x for x in runs("s3.%s.%s.runs" % (st, what)))))
    for what, label in (("portcullis_cpu_us", "Portcullis CPU µs per blob GET"), ("s3s_cpu_us", "s3s-fs CPU µs per blob GET"),
                        ("rps", "blob GETs per second")):
        for st, name in (("s3", "redirect = false"), ("s3r", "redirect = true")):
            if R.get("s3.%s.get.%s.runs" % (st, what)):
                out.append("- s3 suite, %s, %s: %s" % (label, name, " ".join(
                    "%.0f" % x for x in runs("s3.%s.get.%s.runs" % (st, what)))))
if HAVE_GC:
    if "meta.gc.s3s_fs" in R:
        out.append("- gc suite, S3 server: %s" % R["meta.gc.s3s_fs"])
    for size in ("full", "small"):
        if "meta.gc.data." + size in R:
            out.append("- gc suite, data set (%s), as mkgcdata.py counted it: `%s`" % (size, R["meta.gc.data." + size]))
    for c in sorted(k[len("gc.case."):] for k in R if k.startswith("gc.case.")):
        if R.get("gc.%s.wall.runs" % c):
            out.append("- gc suite, %s: wall s %s; peak RSS KiB %s%s" % (
                c, R["gc.%s.wall.runs" % c], R.get("gc.%s.rss_kib.runs" % c, "?"),
                "; epoch wait s " + R["gc.%s.wait.runs" % c] if R.get("gc.%s.wait.runs" % c) else ""))
problems = [(k, v) for k, v in sorted(R.items())
            if k.endswith(".error") or k.endswith(".socket_errors") or k.endswith(".log_warnings")]
if problems:
    out.append("")
    out.append("## Problems")
    out.append("")
    for k, v in problems:
        out.append("- `%s`: %s" % (k, v))
print("\n".join(out))
