"""A real registry for image tests: Debian's docker-registry on 127.0.0.1, started and stopped
by the test, and a small builder that makes images (layers, configs, manifests, indexes) and
pushes them with the registry's plain HTTP API."""
import gzip
import hashlib
import http.client
import io
import json
import os
import select
import socket
import subprocess
import tarfile
import time
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # bcrypt for htpasswd (the registry takes no other hash)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    """docker-registry serving a storage dir under tmp. auth=(user, password) turns on its
    htpasswd basic auth."""

    def __init__(self, tmp, auth=None, port=None, tls=False):
        self.dir = os.path.join(tmp, "registry")
        self.storage = os.path.join(self.dir, "storage")
        os.makedirs(self.storage, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.log_path = os.path.join(self.dir, "registry.log")
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if auth:
            hp = os.path.join(self.dir, "htpasswd")
            with open(hp, "w") as f:
                f.write(f"{auth[0]}:{crypt.crypt(auth[1], crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
            cfg["auth"] = {"htpasswd": {"realm": "torpor-test", "path": hp}}
        self.tls = tls
        if tls:  # a self-signed certificate: HTTPS without a CA the client knows
            cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
                           check=True, capture_output=True)
            cfg["http"]["tls"] = {"certificate": cert, "key": key}
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.proc = None

    def start(self, timeout=30):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Ready once it logs that it listens (bounded; no sleeping).
        deadline = time.monotonic() + timeout
        buf = b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("docker-registry did not start:\n" + buf.decode(errors="replace"))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    continue
                buf += chunk
                self.log.write(chunk)
        self.log.flush()
        # Keep draining its output into the log file so it never blocks on a full pipe.
        self.pump = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=self.log)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc:
            self.pump.wait(timeout=30)
            self.log.close()
            self.proc.stdout.close()
        self.proc = None

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    # --- the HTTP API ---
    def _conn(self):
        if self.tls:
            import ssl
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60,
                                               context=ssl._create_unverified_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _headers(self, extra=None):
        h = dict(extra or {})
        if self.auth:
            import base64
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return h

    def push_blob(self, repo, data):
        d = sha256(data)
        c = self._conn()
        c.request("POST", f"/v2/{repo}/blobs/uploads/", headers=self._headers())
        r = c.getresponse()
        r.read()
        assert r.status == 202, (r.status, r.reason)
        loc = r.getheader("Location")
        sep = "&" if "?" in loc else "?"
        path = loc.split(self.host, 1)[-1] if "://" in loc else loc
        c.request("PUT", f"{path}{sep}digest={d}", body=data,
                  headers=self._headers({"Content-Type": "application/octet-stream"}))
        r = c.getresponse()
        body = r.read()
        assert r.status == 201, (r.status, body)
        c.close()
        return d

    def push_manifest(self, repo, ref, media_type, body):
        c = self._conn()
        c.request("PUT", f"/v2/{repo}/manifests/{ref}", body=body,
                  headers=self._headers({"Content-Type": media_type}))
        r = c.getresponse()
        text = r.read()
        assert r.status == 201, (r.status, text)
        c.close()
        return sha256(body)

    def blob_file(self, digest):
        """The registry's storage file of a blob (tests alter it)."""
        h = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", h[:2], h, "data")


def make_layer(files, gz=True, extra=None):
    """A layer tar (gzipped unless gz=False) of {path: bytes}."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data in sorted(files.items()):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = 0o755
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
        for ti in extra or ():
            t.addfile(ti)
    raw = bio.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


class Image:
    """An image built in memory: config + layers + manifest (OCI or Docker v2s2)."""

    def __init__(self, layers, docker=False, arch="amd64", env=None, cmd=None, gz=True):
        self.docker = docker
        self.layers = layers
        diff_ids = [sha256(gzip.decompress(l) if gz else l) for l in layers]
        cfg = {"architecture": arch, "os": "linux", "created": "2025-01-02T03:04:05Z",
               "config": {"Env": env or ["PATH=/bin"], "Cmd": cmd or ["/bin/sh"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        self.config = json.dumps(cfg, sort_keys=True).encode()
        lmt = (DOCKER_LAYER if docker else (OCI_LAYER_GZIP if gz else OCI_LAYER_TAR))
        self.manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        m = {"schemaVersion": 2, "mediaType": self.manifest_type,
             "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                        "digest": sha256(self.config), "size": len(self.config)},
             "layers": [{"mediaType": lmt, "digest": sha256(l), "size": len(l)} for l in layers]}
        self.manifest = json.dumps(m, sort_keys=True).encode()
        self.digest = sha256(self.manifest)
        self.config_digest = sha256(self.config)

    def blobs(self):
        return [self.config, *self.layers]

    def push(self, reg, repo, tag):
        for b in self.blobs():
            reg.push_blob(repo, b)
        return reg.push_manifest(repo, tag, self.manifest_type, self.manifest)


def push_index(reg, repo, tag, entries, docker=False):
    """An index / manifest list of (image, os, arch) pushed under tag; the images are pushed
    by digest first."""
    ms = []
    for img, os_, arch in entries:
        for b in img.blobs():
            reg.push_blob(repo, b)
        reg.push_manifest(repo, img.digest, img.manifest_type, img.manifest)
        ms.append({"mediaType": img.manifest_type, "digest": img.digest,
                   "size": len(img.manifest), "platform": {"os": os_, "architecture": arch}})
    mt = DOCKER_LIST if docker else OCI_INDEX
    body = json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": ms}).encode()
    return reg.push_manifest(repo, tag, mt, body), body


class Front:
    """An HTTP front of the registry on its own port, for what docker-registry does not do by
    itself: demand an anonymous bearer token (token=...), answer blob GETs with a 307 to the
    registry (redirect_blobs; to redirect_to's host:port if given), send a wrong
    Docker-Content-Digest (bad_digest), answer manifest GETs with a 404 whose error message is
    error_message. Records the Authorization each request carried."""

    def __init__(self, reg, token=None, redirect_blobs=False, bad_digest=False, redirect_to=None,
                 error_message=None):
        import http.server
        import threading
        self.reg = reg
        self.token_requests = []
        self.authorized = 0
        self.redirected = 0
        self.auth_seen = []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status, headers, body=b""):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                front.auth_seen.append(self.headers.get("Authorization"))
                if self.path.startswith("/token"):
                    front.token_requests.append(self.path)
                    self.reply(200, [("Content-Type", "application/json")],
                               json.dumps({"token": token}).encode())
                    return
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self.reply(401, [("WWW-Authenticate",
                                      f'Bearer realm="http://127.0.0.1:{front.port}/token",'
                                      f'service="test-registry"')])
                    return
                front.authorized += 1
                if error_message is not None and "/manifests/" in self.path:
                    self.reply(404, [("Content-Type", "application/json")], json.dumps(
                        {"errors": [{"code": "MANIFEST_UNKNOWN",
                                     "message": error_message}]}).encode())
                    return
                if redirect_blobs and "/blobs/" in self.path:
                    front.redirected += 1
                    self.reply(307, [("Location",
                                      f"http://{redirect_to or reg.host}{self.path}")])
                    return
                c = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=30)
                c.request("GET", self.path, headers={k: v for k, v in self.headers.items()
                                                     if k.lower() not in ("host",
                                                                          "authorization")})
                r = c.getresponse()
                body = r.read()
                c.close()
                hdrs = [(k, v) for k, v in r.getheaders()
                        if k.lower() not in ("content-length", "connection", "transfer-encoding")]
                if bad_digest:
                    hdrs = [(k, "sha256:" + "e" * 64 if k.lower() == "docker-content-digest"
                             else v) for k, v in hdrs]
                self.reply(r.status, hdrs, body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
