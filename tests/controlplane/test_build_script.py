"""hack/controlplane/build.sh's decisions, with fake binaries (no Go build, runs in the fast tier):
KUBEBUILDER_ASSETS wins, cached binaries are reused only for the same pinned inputs, and a missing
toolchain is exit code 2 with a clear message (what the fixtures turn into skip / CI failure)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.controlplane.cluster import BUILD_SCRIPT, REPO


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def fake_bin(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return directory


def versions() -> dict[str, str]:
    lines = (REPO / "hack/controlplane/versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value.strip() for key, value in pairs}


def cache_bin(root: Path) -> Path:
    v = versions()
    return root / f"k8s-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}" / "bin"


def test_kubebuilder_assets_wins(tmp_path: Path) -> None:
    assets = fake_bin(tmp_path / "assets", "kube-apiserver", "etcd")
    proc = run(
        {"KUBEBUILDER_ASSETS": str(assets), "HOTPLUG_CONTROLPLANE_CACHE": str(tmp_path / "c")}, "--print-dir"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(assets)
    assert "nothing built" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_cached_binaries_are_reused_for_the_same_inputs(tmp_path: Path) -> None:
    fingerprint = run({}, "--fingerprint").stdout.strip()
    assert len(fingerprint) == 64
    bindir = fake_bin(cache_bin(tmp_path), "kube-apiserver", "etcd")
    (bindir / ".fingerprint").write_text(fingerprint + "\n")
    # incomplete KUBEBUILDER_ASSETS is ignored; no Go is needed when nothing must be built
    env = {
        "HOTPLUG_CONTROLPLANE_CACHE": str(tmp_path),
        "KUBEBUILDER_ASSETS": str(fake_bin(tmp_path / "partial", "etcd")),
        "GO": "/nonexistent/go",
    }
    proc = run(env, "--print-dir")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(bindir)
    assert "lacks kube-apiserver or etcd" in proc.stderr


def test_stale_or_missing_binaries_need_go(tmp_path: Path) -> None:
    bindir = fake_bin(cache_bin(tmp_path), "kube-apiserver", "etcd")
    (bindir / ".fingerprint").write_text("built-from-other-inputs\n")
    proc = run({"HOTPLUG_CONTROLPLANE_CACHE": str(tmp_path), "GO": "/nonexistent/go"}, "--print-dir")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "no Go toolchain" in proc.stderr
    assert "KUBEBUILDER_ASSETS" in proc.stderr


def test_wrapper_modules_pin_the_versions() -> None:
    v = versions()
    here = REPO / "hack" / "controlplane"
    k8s = (here / "kube-apiserver" / "go.mod").read_text()
    assert f"\tk8s.io/kubernetes {v['KUBERNETES_VERSION']} " in k8s
    staging = "v0." + v["KUBERNETES_VERSION"].removeprefix("v1.")
    assert f"k8s.io/apiserver => k8s.io/apiserver {staging}" in k8s
    assert f"k8s.io/externaljwt => k8s.io/externaljwt {staging}" in k8s
    assert "tool k8s.io/kubernetes/cmd/kube-apiserver" in k8s
    etcd = (here / "etcd" / "go.mod").read_text()
    assert f"go.etcd.io/etcd/server/v3 {v['ETCD_VERSION']}" in etcd
    for module in ("kube-apiserver", "etcd"):
        assert (here / module / "go.sum").stat().st_size > 10_000, f"{module}/go.sum must be committed"
