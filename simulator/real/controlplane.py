"""A real kube-apiserver + etcd on loopback ports: the control plane of the real test tiers.

The binaries come from ``hack/controlplane/build.sh`` (built from the Go modules pinned in
``hack/controlplane/versions.env``, cached under ``.cache/controlplane/``) or from ``KUBEBUILDER_ASSETS``.
Startup mirrors controller-runtime's envtest: etcd on two free ports with ``--unsafe-no-fsync``, then
kube-apiserver with envtest's flags plus client-certificate authentication (a CA made at run time with
Debian's ``openssl`` CLI), ``--authorization-mode=Node,RBAC``, ``--endpoint-reconciler-type=none`` and
the aggregation layer's front-proxy settings (``--requestheader-*``, ``--proxy-client-*``), so extension
API servers such as KubeVirt's virt-api can be registered through an APIService.

Usage (``tests/controlplane/cluster.py`` builds the binaries and shares one per test session)::

    cluster = ControlPlane(bindir, workdir)
    cluster.start()                     # waits for /readyz, writes cluster.kubeconfig (system:masters)
    cluster.install_crds(files)         # waits for Established + discovery
    path = cluster.make_user("alice", ["devs"])
    cluster.stop()                      # kills both processes by PID

Everything here is synchronous (subprocess + urllib) so a session-scoped fixture or a benchmark does not
need an event loop; clients talk to the server through the kubeconfig files. It lives in the simulator
package, not under tests/, because the benchmarks run on it too.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: CN of the client certificate kube-apiserver uses towards extension API servers.
FRONT_PROXY_CLIENT = "front-proxy-client"
START_TIMEOUT = float(os.environ.get("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", "60"))


class ToolMissingError(Exception):
    """A command-line tool the control plane needs (``openssl``) is not on PATH."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


class Pki:
    """A throw-away CA (ECDSA P-256, 7 days) and the certificates a test control plane needs, made with
    the ``openssl`` CLI (the project does not depend on ``cryptography``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ToolMissingError("required tool 'openssl' not found on PATH (Debian package openssl)")
        self.openssl = openssl
        self.ca = CertPair(self.dir / "ca.crt", self.dir / "ca.key")
        self._openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self.ca.key), "-out", str(self.ca.cert), "-days", "7",
            "-subj", "/O=hotplug-agent-tests/CN=hotplug-agent-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip

    def _openssl(self, *args: str) -> None:
        proc = subprocess.run([self.openssl, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr}")

    def issue(self, name: str, subject: str, extensions: str) -> CertPair:
        """Key + certificate signed by the CA. ``subject`` like ``/O=group/CN=user``."""
        pair = CertPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(extensions)
        self._openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(pair.key), "-out", str(csr), "-subj", subject,
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
            "-CAcreateserial", "-days", "7", "-sha256", "-extfile", str(ext), "-out", str(pair.cert),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        return pair

    def serving(self, name: str, ips: Iterable[str], dns: Iterable[str]) -> CertPair:
        san = ",".join([*(f"IP:{ip}" for ip in ips), *(f"DNS:{d}" for d in dns)])
        return self.issue(
            name,
            f"/CN={name}",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n",
        )

    def client(self, user: str, groups: Sequence[str]) -> CertPair:
        """Client certificate: CN is the user name, each O a group (Kubernetes x509 authn)."""
        for part in (user, *groups):
            if "/" in part or "\\" in part or "=" in part:
                raise ValueError(f"unsupported character in {part!r}")
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        return self.issue(
            f"user-{safe}",
            subject,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n",
        )

    def signing_key(self, name: str) -> CertPair:
        """ECDSA key pair for service-account tokens (``cert`` holds the public key)."""
        pair = CertPair(self.dir / f"{name}.pub", self.dir / f"{name}.key")
        self._openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pair.key)
        )  # fmt: skip
        self._openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
        return pair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca: Path, user: str, creds: CertPair) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "controlplane", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": _b64(creds.cert), "client-key-data": _b64(creds.key)},
            }
        ],
        "contexts": [
            {"name": user, "context": {"cluster": "controlplane", "user": user, "namespace": "default"}}
        ],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


# ----------------------------------------------------------------------------------------- processes


@dataclass
class Process:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    #: Added to (and overriding) this process's environment.
    env: dict[str, str] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``grace`` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(grace)
        self.popen = None


@dataclass
class HttpResult:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on loopback. Not thread-safe; one per test session."""

    bindir: Path
    workdir: Path
    etcd_client_port: int = 0
    etcd_peer_port: int = 0
    port: int = 0
    processes: list[Process] = field(default_factory=list)
    kubeconfig: Path = field(init=False)
    pki: Pki = field(init=False)
    front_proxy: Pki = field(init=False)
    proxy_client: CertPair = field(init=False)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "admin.kubeconfig"

    # -- addresses
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    # -- lifecycle
    def start(self) -> None:
        t0 = time.monotonic()
        self.pki = Pki(self.workdir / "pki")
        serving = self.pki.serving("apiserver", ["127.0.0.1"], ["localhost"])
        admin = self.pki.client("admin", ["system:masters"])
        sa = self.pki.signing_key("sa")
        # The aggregation layer's own CA and the client certificate kube-apiserver proxies with (as
        # kubeadm sets it up): an extension API server trusts requests carrying this certificate.
        self.front_proxy = Pki(self.workdir / "pki" / "front-proxy")
        self.proxy_client = self.front_proxy.client(FRONT_PROXY_CLIENT, [])
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.etcd_client_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
            try:
                self._start_etcd()
                self._start_apiserver(serving, sa)
                break
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
        else:
            raise RuntimeError(f"control plane did not start: {last_error}")
        write_kubeconfig(self.kubeconfig, self.url, self.pki.ca.cert, "admin", admin)
        self._admin = admin
        self._wait_for(
            lambda: self.request("GET", "/api/v1/namespaces/default").status == 200, "namespace default"
        )
        self.startup_seconds = time.monotonic() - t0

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        proc = Process(
            "etcd",
            [
                str(self.bindir / "etcd"),
                "--name=controlplane",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=controlplane={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self.processes.append(proc)
        proc.start()
        self._wait_http(proc, f"{self.etcd_url}/health", None)

    def _start_apiserver(self, serving: CertPair, sa: CertPair) -> None:
        proc = Process(
            "kube-apiserver",
            [
                str(self.bindir / "kube-apiserver"),
                # envtest's defaults (controller-runtime pkg/internal/testing/controlplane/apiserver.go)
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-issuer={self.url}/",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                # authentication by client certificate, authorization as in a real cluster
                f"--client-ca-file={self.pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--endpoint-reconciler-type=none",
                # the aggregation layer (APIServices of extension API servers such as virt-api)
                f"--requestheader-client-ca-file={self.front_proxy.ca.cert}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.proxy_client.cert}",
                f"--proxy-client-key-file={self.proxy_client.key}",
                "--v=1",
            ],
            self.workdir / "kube-apiserver.log",
        )
        self.processes.append(proc)
        proc.start()
        self._wait_http(proc, f"{self.url}/readyz", self.ssl_context(None))

    def restart_apiserver(self) -> float:
        """Restart kube-apiserver only (etcd keeps the data), as a rolling control-plane upgrade does.
        Its watch cache starts again at the current resourceVersion, so a watch resuming from an older
        one gets 410 Expired. Returns the seconds until ready with the CRDs served again."""
        t0 = time.monotonic()
        proc = next(p for p in self.processes if p.name == "kube-apiserver")
        proc.stop()
        proc.start()
        self._wait_http(proc, f"{self.url}/readyz", self.ssl_context(None))
        self._wait_for(self._crds_discoverable, "CRDs served after restart")
        return time.monotonic() - t0

    def _crds_discoverable(self) -> bool:
        """Discovery lists the KubeVirt resources and each one can be listed (right after a start the
        watch cache answers 429 "storage is (re)initializing" until it has synced)."""
        res = self.request("GET", "/apis/kubevirt.io/v1")
        if res.status != 200:
            return False
        plurals = [r["name"] for r in res.json().get("resources", []) if "/" not in r["name"]]
        return bool(plurals) and all(
            self.request("GET", f"/apis/kubevirt.io/v1/{plural}?limit=1").status == 200 for plural in plurals
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    # -- HTTP helpers (admin credentials)
    def ssl_context(self, client: CertPair | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        if client is not None:
            ctx.load_cert_chain(str(client.cert), str(client.key))
        return ctx

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> HttpResult:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(self._admin), timeout=30) as resp:
                return HttpResult(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return HttpResult(exc.code, exc.read())

    def _wait_http(self, proc: Process, url: str, ctx: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if not proc.running():
                raise RuntimeError(
                    f"{proc.name} exited ({proc.popen and proc.popen.returncode}):\n{proc.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"{proc.name} not ready at {url} after {START_TIMEOUT}s ({last}):\n{proc.log_tail()}"
        )

    def _wait_for(self, check: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}")

    # -- CRDs and users
    _CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

    def install_crds(self, files: Iterable[Path], timeout: float = 30.0) -> list[str]:
        """Create (or replace) the CRDs in ``files``; wait until each is Established and every served
        version lists the resource in discovery. Returns the CRD names."""
        crds = [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
        names = [self._put_crd(crd) for crd in crds]
        for crd in crds:
            name = crd["metadata"]["name"]
            self._wait_for(lambda crd=crd: self._crd_established(crd), f"CRD {name} Established", timeout)
            self._wait_for(lambda crd=crd: self._crd_discoverable(crd), f"CRD {name} served", timeout)
        return names

    def _put_crd(self, crd: dict[str, Any]) -> str:
        """Create the CRD, or replace the one of that name; its name."""
        name: str = crd["metadata"]["name"]
        res = self.request("POST", self._CRDS, crd)
        if res.status == 409:
            current = self.request("GET", f"{self._CRDS}/{name}").json()
            crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            res = self.request("PUT", f"{self._CRDS}/{name}", crd)
        if res.status not in (200, 201):
            raise RuntimeError(f"creating CRD {name}: HTTP {res.status} {res.body[:500]!r}")
        return name

    def _crd_established(self, crd: dict[str, Any]) -> bool:
        obj = self.request("GET", f"{self._CRDS}/{crd['metadata']['name']}").json()
        conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"

    def _crd_discoverable(self, crd: dict[str, Any]) -> bool:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            res = self.request("GET", f"/apis/{group}/{version['name']}")
            if res.status != 200:
                return False
            if plural not in {r["name"] for r in res.json().get("resources", [])}:
                return False
            # the new resource's watch cache answers 429 until it has synced
            if self.request("GET", f"/apis/{group}/{version['name']}/{plural}?limit=1").status != 200:
                return False
        return True

    def make_user(self, name: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a new client-certificate user (CN=name, O=groups). No RBAC is granted."""
        creds = self.pki.client(name, list(groups))
        safe = creds.cert.stem
        return write_kubeconfig(self.workdir / f"{safe}.kubeconfig", self.url, self.pki.ca.cert, name, creds)

    # -- etcd
    def etcd_revision(self) -> int:
        """Current etcd revision (kube-apiserver resourceVersions are etcd revisions)."""
        res = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/registry/").decode(), "limit": 1})
        return int(res["header"]["revision"])

    def etcd_compact(self, revision: int | None = None) -> int:
        """Compact etcd history up to ``revision`` (default: current) through etcd's JSON gateway, the
        way kube-apiserver's own periodic compaction does. Returns the compacted revision."""
        rev = revision if revision is not None else self.etcd_revision()
        self._etcd_post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def _etcd_post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{self.etcd_url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def describe(cluster: ControlPlane) -> str:
    pids = ", ".join(f"{p.name} pid {p.pid}" for p in cluster.processes)
    return f"kube-apiserver {cluster.url} ({pids}); workdir {cluster.workdir}"
