#!/usr/bin/env python3
"""Build a small but valid OCI image layout full of random bytes (stdlib only).

    mkoci.py OUT_DIR [--layers-mib 250,32,12,4] [--tag latest]

Each layer is a real tar archive holding one file of random bytes, wrapped in a
gzip stream made of *stored* deflate blocks (zlib level 0).  That keeps the layer
incompressible and cheap to build, and -- because it already carries the gzip
magic -- skopeo pushes it as-is instead of spending seconds gzip-compressing
250 MiB of random data (which would measure gzip, not the proxy).

The layout is what `skopeo copy oci:OUT_DIR:TAG docker://...` expects:
oci-layout, index.json, blobs/sha256/<config, manifest, layers>.
Prints the total size of the blobs (bytes) on stdout.
"""
import argparse
import hashlib
import json
import os
import sys
import tarfile
import time
import zlib

CHUNK = 1 << 20


def write_blob(blobdir, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobdir, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def write_layer(blobdir, index, size):
    """Stream a gzip(level 0)-wrapped tar with one random file; return descriptors."""
    tmp = os.path.join(blobdir, ".layer-%d.tmp" % index)
    diff = hashlib.sha256()        # digest of the uncompressed tar (config diff_id)
    comp = hashlib.sha256()        # digest of the blob as stored (manifest digest)
    z = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31 = gzip container
    total = 0

    with open(tmp, "wb") as out:
        def emit(raw):
            nonlocal total
            diff.update(raw)
            c = z.compress(raw)
            if c:
                comp.update(c)
                out.write(c)
                total += len(c)

        info = tarfile.TarInfo("bench/layer%d.bin" % index)
        info.size = size
        info.mode = 0o644
        info.mtime = int(time.time())
        emit(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left > 0:
            n = min(CHUNK, left)
            emit(os.urandom(n))
            left -= n
        pad = (-size) % tarfile.BLOCKSIZE
        emit(b"\0" * pad + b"\0" * (2 * tarfile.BLOCKSIZE))  # padding + end-of-archive
        tail = z.flush()
        comp.update(tail)
        out.write(tail)
        total += len(tail)

    digest = comp.hexdigest()
    os.replace(tmp, os.path.join(blobdir, digest))
    return ("sha256:" + digest, total, "sha256:" + diff.hexdigest())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layers-mib", default="250,32,12,4",
                    help="comma-separated layer payload sizes in MiB (default 250,32,12,4)")
    ap.add_argument("--tag", default="latest")
    args = ap.parse_args()

    sizes = [int(float(s) * CHUNK) for s in args.layers_mib.split(",") if s.strip()]
    if not sizes:
        sys.exit("mkoci.py: no layers requested")
    blobdir = os.path.join(args.out, "blobs", "sha256")
    os.makedirs(blobdir, exist_ok=True)

    layers = []
    diff_ids = []
    for i, size in enumerate(sizes):
        digest, length, diff_id = write_layer(blobdir, i, size)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": digest, "size": length})
        diff_ids.append(diff_id)

    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "portcullis bench/mkoci.py"} for _ in sizes],
    }
    cdigest, csize = write_blob(blobdir, json.dumps(config, separators=(",", ":")).encode())

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cdigest, "size": csize},
        "layers": layers,
    }
    mdigest, msize = write_blob(blobdir, json.dumps(manifest, separators=(",", ":")).encode())

    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": args.tag},
        }],
    }
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    print(sum(l["size"] for l in layers) + csize + msize)


if __name__ == "__main__":
    main()
