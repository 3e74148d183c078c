"""The ``controlplane`` test tier's side of the real kube-apiserver + etcd: building the binaries,
the skip/fail policy when they cannot be built, one shared instance per test session.

The launcher itself (PKI, processes, CRD installation) is :mod:`simulator.real.controlplane`, shared with
the benchmarks; its names are re-exported here for the tests.

Usage (the fixtures in ``conftest.py`` do this)::

    bindir = ensure_binaries()          # skips locally / fails under CI=true without Go
    cluster = ControlPlane(bindir, workdir)
    cluster.start()                     # waits for /readyz, writes cluster.kubeconfig (system:masters)
    cluster.install_crds(KUBEVIRT_CRDS) # waits for Established + discovery
    path = cluster.make_user("alice", ["devs"])
    cluster.stop()                      # kills both processes by PID

Everything here is synchronous (subprocess + urllib) so a session-scoped fixture does not need an event
loop; tests talk to the server with kubernetes-asyncio or aiohttp through the kubeconfig files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from simulator.real.controlplane import (
    CertPair,
    ControlPlane,
    HttpResult,
    Pki,
    Process,
    describe,
    free_port,
    write_kubeconfig,
)
from tests.tooling import require_tool

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build.sh"
CRD_DIR = REPO / "simulator" / "crds"
KUBEVIRT_CRDS = sorted(CRD_DIR.glob("*.yaml"))


class ControlPlaneUnavailableError(Exception):
    """The tier cannot run here (no Go toolchain to build the binaries); the message says what to do."""


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_or_fail(message: str) -> NoReturn:
    """Same policy as ``tests/tooling.py``'s ``require_tool``: a missing tool skips locally and fails
    under ``CI=true`` (CI must install everything the suite needs)."""
    if _in_ci():
        pytest.fail(f"{message} (CI=true: the controlplane tier must run in CI)", pytrace=False)
    pytest.skip(message)


def go_toolchain() -> str | None:
    """Path of the ``go`` command (PATH, then /usr/local/go/bin), or None."""
    return shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")


def build_binaries(stream_output: bool = False) -> Path:
    """Run ``hack/controlplane/build.sh --print-dir`` and return the folder holding kube-apiserver and
    etcd. Instant when the binaries are cached or ``KUBEBUILDER_ASSETS`` provides them; a cold build
    takes ~5 min on 2 cores. Raises ControlPlaneUnavailableError when Go is missing (exit code 2)."""
    env = dict(os.environ)
    go = go_toolchain()
    if go is not None:
        env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"],
        stdout=subprocess.PIPE,
        stderr=None if stream_output else subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode == 2:
        raise ControlPlaneUnavailableError(
            "kube-apiserver/etcd are not built and there is no Go toolchain to build them "
            "(install Go >= 1.24 or set KUBEBUILDER_ASSETS to a folder with kube-apiserver and etcd)"
        )
    if proc.returncode != 0:
        raise RuntimeError(f"hack/controlplane/build.sh failed ({proc.returncode}):\n{proc.stderr or ''}")
    bindir = Path(proc.stdout.strip().splitlines()[-1])
    for name in ("kube-apiserver", "etcd"):
        if not os.access(bindir / name, os.X_OK):
            raise RuntimeError(f"build.sh reported {bindir} but {name} is not there")
    return bindir


_BINARIES: dict[str, Path | str] = {}  # "dir" -> Path, or "error" -> reason; once per process


def ensure_binaries(stream_output: bool = False) -> Path:
    """Binaries folder, built once per process; skips (locally) or fails (CI) when impossible."""
    if not _BINARIES:
        ensure_binaries_or_remember(stream_output=stream_output)
    bindir = _BINARIES.get("dir")
    if "failure" in _BINARIES:
        pytest.fail(f"building kube-apiserver/etcd failed: {_BINARIES['failure']}", pytrace=False)
    if not isinstance(bindir, Path):
        skip_or_fail(str(_BINARIES.get("error", "controlplane binaries unavailable")))
    return bindir


if __name__ == "__main__":  # manual use: python -m tests.controlplane.cluster  (Ctrl-C stops it)
    import tempfile

    bindir = build_binaries(stream_output=True)
    with tempfile.TemporaryDirectory(prefix="controlplane-") as tmp:
        cp = ControlPlane(bindir, Path(tmp))
        try:
            cp.start()
            cp.install_crds(KUBEVIRT_CRDS)
            print(
                f"ready in {cp.startup_seconds:.1f}s: {describe(cp)}\nKUBECONFIG={cp.kubeconfig}",
                file=sys.stderr,
            )
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            cp.stop()


# ------------------------------------------------------------------------------ shared session cluster


class _Shared:
    """One control plane per pytest process, shared by the fixtures of tests/controlplane and
    tests/conformance (each conftest's session fixture acquires it; the last release stops it)."""

    cluster: ControlPlane | None = None
    users = 0


def acquire_shared(workdir: Path) -> ControlPlane:
    if _Shared.cluster is None:
        bindir = ensure_binaries()
        require_tool("openssl")
        cluster = ControlPlane(bindir, workdir)
        try:
            cluster.start()
            cluster.install_crds(KUBEVIRT_CRDS)
        except BaseException:
            cluster.stop()
            raise
        _Shared.cluster = cluster
    _Shared.users += 1
    return _Shared.cluster


def release_shared() -> None:
    _Shared.users -= 1
    if _Shared.users <= 0 and _Shared.cluster is not None:
        _Shared.cluster.stop()
        _Shared.cluster = None
        _Shared.users = 0


def build_before_tests(session: pytest.Session) -> None:
    """``pytest_collection_finish`` helper: when selected tests need the control plane and the binaries
    are missing, build them now (outside any test's timeout, output shown) instead of inside the first
    test's fixture."""
    if _BINARIES or session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("controlplane") for item in session.items):
        return
    capman = session.config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        ensure_binaries_or_remember()
        return
    with capman.global_and_fixture_disabled():
        ensure_binaries_or_remember(stream_output=True)


def ensure_binaries_or_remember(stream_output: bool = False) -> None:
    """Like ensure_binaries but never skips or raises: the outcome is remembered and reported by the
    fixtures (a missing toolchain skips or fails as require_tool does; a failed build always fails)."""
    try:
        _BINARIES["dir"] = build_binaries(stream_output=stream_output)
    except ControlPlaneUnavailableError as exc:
        _BINARIES["error"] = str(exc)
    except (RuntimeError, OSError) as exc:
        _BINARIES["failure"] = str(exc)


__all__ = [
    "BUILD_SCRIPT",
    "CRD_DIR",
    "KUBEVIRT_CRDS",
    "REPO",
    "CertPair",
    "ControlPlane",
    "ControlPlaneUnavailableError",
    "HttpResult",
    "Pki",
    "Process",
    "acquire_shared",
    "build_before_tests",
    "describe",
    "ensure_binaries",
    "free_port",
    "release_shared",
    "write_kubeconfig",
]
