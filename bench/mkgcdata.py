#!/usr/bin/env python3
"""Write a registry for the gc benchmark straight into Docker distribution's on-disk layout.

    mkgcdata.py DIR [--repos 500] [--manifests 3] [--layers 3] [--orphans 5]
                    [--untagged-every 5] [--size 1024] [--age-days 2] [--seed 1]

DIR gets docker/registry/v2/{blobs,repositories}, the tree a filesystem `rootdirectory`
(docker-registry) or `[registry] root` (Portcullis, storage = "fs") points at. Per
repository `bench/rNNNN`:

- MANIFESTS OCI image manifests (application/vnd.oci.image.manifest.v1+json), each
  referencing its own config and LAYERS layers: 2 + LAYERS blobs per manifest (the
  manifest itself is a blob too), each tagged `tN` (`_manifests/tags/tN/current/link` and
  `index/sha256/<hex>/link`) and a revision (`_manifests/revisions/sha256/<hex>/link`);
- ORPHANS layer blobs linked into the repository (`_layers`) that no manifest references,
  as a push whose manifest never came leaves them: garbage for any collector;
- in every UNTAGGED_EVERY-th repository the last manifest has lost its tag (its tag folder
  is gone, the revision stays): its blobs are kept by default and garbage only when
  untagged manifests are deleted too (`--delete-untagged`).

Every blob is SIZE random bytes (manifests and configs: their JSON), stored under
blobs/sha256/<2 hex>/<hex>/data with its true sha256. All files get an mtime AGE_DAYS in
the past so that a collector's grace period (Portcullis: 1 h by default) spares nothing.
No blob is shared between repositories. Prints one JSON object with the counts (what a
correct collector deletes) on stdout.
"""
import argparse
import hashlib
import json
import os
import random
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("dir")
    ap.add_argument("--repos", type=int, default=500)
    ap.add_argument("--manifests", type=int, default=3, help="manifests per repository")
    ap.add_argument("--layers", type=int, default=3, help="layers per manifest")
    ap.add_argument("--orphans", type=int, default=5, help="unreferenced layer blobs per repository")
    ap.add_argument("--untagged-every", type=int, default=5,
                    help="every Nth repository's last manifest is untagged (0: none)")
    ap.add_argument("--size", type=int, default=1024, help="bytes per layer blob")
    ap.add_argument("--age-days", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.repos < 1 or a.manifests < 1 or a.layers < 0 or a.orphans < 0 or a.size < 1:
        sys.exit("mkgcdata.py: --repos and --manifests must be >= 1, --layers/--orphans >= 0, --size >= 1")

    rng = random.Random(a.seed)
    v2 = os.path.join(a.dir, "docker", "registry", "v2")
    if os.path.exists(v2):
        sys.exit("mkgcdata.py: %s exists; give an empty or new directory" % v2)
    old = time.time() - a.age_days * 86400
    files = []          # every file written, for the mtime pass at the end

    def write(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)

    def blob(data):
        hexd = hashlib.sha256(data).hexdigest()
        write(os.path.join(v2, "blobs", "sha256", hexd[:2], hexd, "data"), data)
        return hexd

    def link(path, hexd):
        write(os.path.join(path, "link"), ("sha256:" + hexd).encode())

    counts = dict(repositories=a.repos, blobs=0, manifests=0, tagged_manifests=0,
                  untagged_manifests=0, referenced_by_tagged=0, referenced_by_untagged=0,
                  unreferenced=0)
    for r in range(a.repos):
        repo = os.path.join(v2, "repositories", "bench", "r%04d" % r)
        layers_dir = os.path.join(repo, "_layers", "sha256")
        untagged = a.untagged_every > 0 and r % a.untagged_every == a.untagged_every - 1
        for m in range(a.manifests):
            config = json.dumps({
                "architecture": "amd64", "os": "linux",
                "config": {"Env": ["BENCH=r%04d-%d" % (r, m), "SALT=%x" % rng.getrandbits(64)]},
                "rootfs": {"type": "layers", "diff_ids": []},
            }).encode()
            layers = [rng.randbytes(a.size) for _ in range(a.layers)]
            cfg_hex = blob(config)
            layer_hex = [blob(x) for x in layers]
            for h in [cfg_hex] + layer_hex:
                link(os.path.join(layers_dir, h), h)
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "size": len(config), "digest": "sha256:" + cfg_hex},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "size": len(x), "digest": "sha256:" + h} for x, h in zip(layers, layer_hex)],
            }, indent=3).encode()
            man_hex = blob(manifest)
            link(os.path.join(repo, "_manifests", "revisions", "sha256", man_hex), man_hex)
            n = 2 + a.layers
            counts["blobs"] += n
            counts["manifests"] += 1
            if untagged and m == a.manifests - 1:
                # the tag was deleted (distribution removes the whole tag folder)
                counts["untagged_manifests"] += 1
                counts["referenced_by_untagged"] += n
            else:
                tag = os.path.join(repo, "_manifests", "tags", "t%d" % m)
                link(os.path.join(tag, "current"), man_hex)
                link(os.path.join(tag, "index", "sha256", man_hex), man_hex)
                counts["tagged_manifests"] += 1
                counts["referenced_by_tagged"] += n
        for _ in range(a.orphans):
            h = blob(rng.randbytes(a.size))
            link(os.path.join(layers_dir, h), h)
            counts["blobs"] += 1
            counts["unreferenced"] += 1

    for p in files:
        os.utime(p, (old, old))
    counts["garbage_default"] = counts["unreferenced"]
    counts["garbage_delete_untagged"] = counts["unreferenced"] + counts["referenced_by_untagged"]
    counts["files"] = len(files)
    counts["bytes"] = sum(os.path.getsize(p) for p in files)
    json.dump(counts, sys.stdout)
    print()


if __name__ == "__main__":
    main()
