#!/usr/bin/env python3
"""Writes an OCI image layout (https://github.com/opencontainers/image-spec) for
the operator: one layer holding the static binary, the same files and config as
the Dockerfile's final stage. Deterministic: fixed mtimes and owners, sorted
entries, gzip without a timestamp and no creation date, so the same binary gives
the same digest."""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

# The image config; the Dockerfile declares the same (tests/image.rs compares them).
BINARY_PATH = "exo-matrix-operator"
CONFIG = {
    "User": "65532:65532",
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Entrypoint": ["/exo-matrix-operator"],
    "Cmd": ["run"],
    "ExposedPorts": {"8080/tcp": {}},
}


def write_blob(out, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def layer_tar(binary):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(BINARY_PATH)
        info.size = os.path.getsize(binary)
        info.mode = 0o755
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with open(binary, "rb") as f:
            tar.addfile(info, f)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    args = ap.parse_args()

    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(os.path.join(args.out, "blobs", "sha256"))

    tar = layer_tar(args.binary)
    layer = write_blob(args.out, gzip.compress(tar, compresslevel=6, mtime=0),
                       "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": CONFIG,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created_by": "image/build.sh: COPY exo-matrix-operator /exo-matrix-operator"}],
    }
    config_desc = write_blob(args.out, json.dumps(config, sort_keys=True, separators=(",", ":")).encode(),
                             "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = write_blob(args.out, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(),
                               "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": args.tag}
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
