#!/usr/bin/env python3
"""Small HTTP/1.1 keep-alive load generator over TLS that handles HEAD (stdlib only).

    h1load.py URL [--method HEAD] [--connections 8] [--duration 10] [--max-requests N]
              [--cacert CA] [-H 'Name: value' ...]

Why it exists: wrk 4.1 and `h2load --h1` both wait for a HEAD response's
Content-Length worth of body that never comes, so neither completes a single HEAD
request. This client knows HEAD responses have no body. Each connection is one
thread that sends a request, reads the whole response, and repeats on the same
connection until the duration (or the request count) is used up.

It only speaks what the bench needs: TLS with ALPN http/1.1, Content-Length bodies
(no chunked responses), keep-alive. A response with a body it cannot delimit, a
closed connection or a TLS error is counted under "errors" and the connection is
reopened.

Prints key value lines: requests, non2xx, errors, seconds, rps, statuses.
"""
import argparse
import collections
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--connections", "-c", type=int, default=8)
    ap.add_argument("--duration", "-d", type=float, default=10.0)
    ap.add_argument("--max-requests", "-n", type=int, default=0, help="0 = only the duration bounds the run")
    ap.add_argument("--cacert")
    ap.add_argument("-H", "--header", action="append", default=[])
    a = ap.parse_args()

    u = urlsplit(a.url)
    if u.scheme != "https":
        sys.exit("h1load.py: only https:// URLs")
    host, port = u.hostname, u.port or 443
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    head = a.method.upper() == "HEAD"
    lines = ["%s %s HTTP/1.1" % (a.method.upper(), path), "Host: %s" % u.netloc, "User-Agent: bench-h1load"]
    lines += a.header
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    ctx = ssl.create_default_context(cafile=a.cacert)
    ctx.set_alpn_protocols(["http/1.1"])

    lock = threading.Lock()
    statuses = collections.Counter()
    counters = {"requests": 0, "errors": 0}
    budget = [a.max_requests]
    deadline = time.monotonic() + a.duration

    def take():
        if a.max_requests <= 0:
            return True
        with lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def connect():
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(s, server_hostname=host)

    def one(conn, buf):
        """Send one request on conn, return (status, leftover buffer, keep_alive)."""
        conn.sendall(request)
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response headers")
            buf += chunk
        hdr, buf = buf.split(b"\r\n\r\n", 1)
        hlines = hdr.decode("latin-1").split("\r\n")
        status = int(hlines[0].split(" ", 2)[1])
        length, keep, chunked = 0, True, False
        for h in hlines[1:]:
            k, _, v = h.partition(":")
            k = k.strip().lower()
            v = v.strip()
            if k == "content-length":
                length = int(v)
            elif k == "connection" and v.lower() == "close":
                keep = False
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if not head and status not in (204, 304) and not (100 <= status < 200):
            if chunked:
                raise ValueError("chunked response bodies are not supported")
            while len(buf) < length:
                chunk = conn.recv(max(65536, length - len(buf)))
                if not chunk:
                    raise ConnectionError("connection closed inside the response body")
                buf += chunk
            buf = buf[length:]
        return status, buf, keep

    def worker():
        local = collections.Counter()
        n = errs = 0
        conn = None
        buf = b""
        while time.monotonic() < deadline and take():
            try:
                if conn is None:
                    conn, buf = connect(), b""
                status, buf, keep = one(conn, buf)
                local[status] += 1
                n += 1
                if not keep:
                    conn.close()
                    conn = None
            except Exception:
                errs += 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()
        with lock:
            statuses.update(local)
            counters["requests"] += n
            counters["errors"] += errs

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    n = counters["requests"]
    non2xx = sum(v for k, v in statuses.items() if not 200 <= k < 300)
    print("requests %d" % n)
    print("non2xx %d" % non2xx)
    print("errors %d" % counters["errors"])
    print("seconds %.3f" % secs)
    print("rps %.2f" % (n / secs if secs > 0 else 0))
    print("statuses %s" % (",".join("%d:%d" % kv for kv in sorted(statuses.items())) or "-"))


if __name__ == "__main__":
    main()
