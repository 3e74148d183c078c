"""The ``kubevirt`` test tier: real kube-apiserver + etcd, KubeVirt's real virt-api and virt-controller,
and the node-side stand-in (:mod:`simulator.real.node`).

* :func:`build` runs ``hack/kubevirt/build.sh --version V --print-dir`` (a no-op when built; a cold
  build of one release takes minutes), :func:`ensure_build` applies the suite's policy: without Go the
  tier skips locally and fails under ``CI=true``; a failed build always fails.
* :class:`Tier` is one release on its own control plane (each release brings its own CRDs, and two
  virt-controllers must not share a cluster): KubeVirt installed, virt-api's webhooks and APIServices
  registered, virt-controller leading, the Multus NetworkAttachmentDefinition CRD installed.
* :class:`TierPool` starts a tier per release on first use and stops them all at the end of the session.

The node side runs in the test's own event loop (``tests/kubevirt/conftest.py``), like the agent.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simulator.real.controlplane import ControlPlane
from simulator.real.kubevirt import KubeVirtBuild, KubeVirtSettings, RealKubeVirt
from tests.controlplane.cluster import REPO, ensure_binaries, go_toolchain, skip_or_fail
from tests.tooling import require_tool

BUILD_SCRIPT = REPO / "hack" / "kubevirt" / "build.sh"
VERSIONS_FILE = REPO / "hack" / "kubevirt" / "versions.env"
NAD_CRD = REPO / "simulator" / "crds" / "network-attachment-definitions.yaml"


def pinned_versions() -> list[str]:
    """``KUBEVIRT_VERSIONS`` of versions.env, the default first."""
    for line in VERSIONS_FILE.read_text().splitlines():
        if line.startswith("KUBEVIRT_VERSIONS="):
            return line.split("=", 1)[1].strip().strip('"').split()
    raise AssertionError(f"no KUBEVIRT_VERSIONS in {VERSIONS_FILE}")


DEFAULT_VERSION = pinned_versions()[0]


class KubeVirtUnavailableError(Exception):
    """No Go toolchain to build KubeVirt; the message says what to do."""


def build(version: str, stream_output: bool = False) -> KubeVirtBuild:
    """Build (or find built) release ``version``; raises KubeVirtUnavailableError without Go."""
    go = go_toolchain()
    env = None
    if go is not None:
        import os

        env = {**os.environ, "PATH": f"{Path(go).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--version", version, "--print-dir"],
        stdout=subprocess.PIPE,
        stderr=None if stream_output else subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode == 2:
        raise KubeVirtUnavailableError(
            f"KubeVirt {version} is not built and there is no Go toolchain (Go >= 1.24)"
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"hack/kubevirt/build.sh --version {version} failed ({proc.returncode}):\n{proc.stderr}"
        )
    directory = Path(proc.stdout.strip().splitlines()[-1])
    result = KubeVirtBuild(version, directory)
    for name in ("virt-controller", "virt-api", "virtctl"):
        if not result.binary(name).is_file():
            raise RuntimeError(f"build.sh reported {directory} but bin/{name} is not there")
    return result


_BUILDS: dict[str, KubeVirtBuild | str] = {}  # version → build, or the reason it is unavailable
_FAILURES: dict[str, str] = {}


def build_or_remember(version: str, stream_output: bool = False) -> None:
    try:
        _BUILDS[version] = build(version, stream_output=stream_output)
    except KubeVirtUnavailableError as exc:
        _BUILDS[version] = str(exc)
    except (RuntimeError, OSError) as exc:
        _FAILURES[version] = str(exc)


def ensure_build(version: str) -> KubeVirtBuild:
    if version not in _BUILDS and version not in _FAILURES:
        build_or_remember(version)
    if version in _FAILURES:
        pytest.fail(f"building KubeVirt {version} failed: {_FAILURES[version]}", pytrace=False)
    found = _BUILDS[version]
    if isinstance(found, str):
        skip_or_fail(found)
    assert isinstance(found, KubeVirtBuild)
    return found


def versions_needed(session: pytest.Session) -> list[str]:
    needed: list[str] = []
    for item in session.items:
        marker = item.get_closest_marker("kubevirt")
        if marker is None:
            continue
        version = str(marker.kwargs.get("version", DEFAULT_VERSION))
        if version not in needed:
            needed.append(version)
    return needed


def build_before_tests(session: pytest.Session) -> None:
    """``pytest_collection_finish``: build every release the selected tests need, before the first test
    (output shown, outside any test's timeout)."""
    if session.config.option.collectonly:
        return
    needed = [v for v in versions_needed(session) if v not in _BUILDS and v not in _FAILURES]
    if not needed:
        return
    capman = session.config.pluginmanager.get_plugin("capturemanager")
    for version in needed:
        if capman is None:
            build_or_remember(version)
            continue
        with capman.global_and_fixture_disabled():
            print(f"\nkubevirt tier: building KubeVirt {version} (hack/kubevirt/build.sh)", file=sys.stderr)
            build_or_remember(version, stream_output=True)


@dataclass
class Tier:
    """One KubeVirt release, running on its own control plane."""

    version: str
    cluster: ControlPlane
    kubevirt: RealKubeVirt
    namespaces: list[str] = field(default_factory=list)

    @property
    def build(self) -> KubeVirtBuild:
        return self.kubevirt.build

    def virtctl(self) -> Path:
        return self.build.binary("virtctl")

    def set_kubevirt(self, settings: KubeVirtSettings) -> None:
        self.kubevirt.apply_settings(settings)

    def stop(self) -> None:
        self.kubevirt.stop()
        self.cluster.stop()


def start_tier(version: str, workdir: Path) -> Tier:
    build_ = ensure_build(version)
    bindir = ensure_binaries()
    require_tool("openssl")
    cluster = ControlPlane(bindir, workdir / "controlplane")
    kubevirt = RealKubeVirt(cluster, build_, workdir / "kubevirt")
    try:
        cluster.start()
        cluster.install_crds([NAD_CRD])
        kubevirt.install()
        kubevirt.start()
    except BaseException:
        kubevirt.stop()
        cluster.stop()
        raise
    return Tier(version, cluster, kubevirt)


class TierPool:
    """Tiers by release, started on first use, stopped together (``close``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tiers: dict[str, Tier] = {}

    def get(self, version: str = DEFAULT_VERSION) -> Tier:
        tier = self.tiers.get(version)
        if tier is None:
            tier = self.tiers[version] = start_tier(version, self.workdir / version)
        return tier

    def close(self) -> None:
        for tier in self.tiers.values():
            tier.stop()
        self.tiers.clear()
