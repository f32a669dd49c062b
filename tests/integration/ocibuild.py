"""Builds OCI images for tests and benchmarks: layers written with tarfile (full control over
whiteouts and hostile members), blobs, manifest and config in an OCI layout, tagged in index.json
as torpord's image store expects (org.opencontainers.image.ref.name = the normalized reference).
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "tar": "application/vnd.oci.image.layer.v1.tar",
            "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
REF_NAME = "org.opencontainers.image.ref.name"


def put_blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, digest[7:])
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    return digest, len(data)


def layer(members, compression="gzip"):
    """members: (name, kind, arg, mode) with kind file|dir|symlink|hardlink|fifo; arg = bytes,
    link target or None. Returns the layer's bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg, mode in members:
            ti = tarfile.TarInfo(name)
            ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
            ti.mtime = 1700000000
            data = None
            if kind == "file":
                data = arg if isinstance(arg, bytes) else (arg or "").encode()
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    if compression == "zstd":
        import subprocess
        return subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                              check=True).stdout
    return raw


def busybox_members(extra_applets=()):
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    m = [("bin", "dir", None, 0o755), ("bin/busybox", "file", bb, 0o755)]
    for a in ("sh", "env", "echo", "cat", "ls", "id", "pwd", "sleep", "sync", "true", "false",
              "test", "kill", "trap", *extra_applets):
        m.append((f"bin/{a}", "symlink", "busybox", 0o777))
    m += [("etc", "dir", None, 0o755),
          ("etc/passwd", "file", "root:x:0:0:root:/root:/bin/sh\n"
                                 "app:x:1000:1000:app:/home/app:/bin/sh\n", 0o644),
          ("etc/group", "file", "root:x:0:\napp:x:1000:\n", 0o644),
          ("root", "dir", None, 0o700), ("home", "dir", None, 0o755),
          ("home/app", "dir", None, 0o755), ("tmp", "dir", None, 0o1777),
          ("proc", "dir", None, 0o755), ("sys", "dir", None, 0o755),
          ("dev", "dir", None, 0o755), ("run", "dir", None, 0o755)]
    return m


def build(layout, ref, layers, config=None, compression="gzip", layer_media_type=None,
          architecture="amd64"):
    """Writes an image into the OCI layout at `layout` (created) tagged `ref` (a normalized
    full reference). layers: lists of members, or bytes (a prepared layer). Returns the
    manifest digest."""
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for members in layers:
        data = members if isinstance(members, bytes) else layer(members, compression)
        digest, size = put_blob(layout, data)
        descs.append({"mediaType": layer_media_type or MT_LAYER[compression], "digest": digest,
                      "size": size})
        diff_ids.append(digest)
    cfg = {"architecture": architecture, "os": "linux", "config": config or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdigest, csize = put_blob(layout, json.dumps(cfg).encode())
    man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
           "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
           "layers": descs}
    mdata = json.dumps(man).encode()
    mdigest, msize = put_blob(layout, mdata)
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get(REF_NAME) != ref]
    index["manifests"].append({"mediaType": MT_MANIFEST, "digest": mdigest, "size": msize,
                               "annotations": {REF_NAME: ref}})
    tmp = index_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(index, f)
    os.rename(tmp, index_path)
    return mdigest
