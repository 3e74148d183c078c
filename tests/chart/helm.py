"""Render and lint the chart with Helm's own engine (the helm v3 CLI).

Where helm comes from, in order: ``$HELM``; ``hack/tools/install-helm.sh`` (builds the pinned version
from its Go module into ``.cache/bin/`` when missing, needs Go); ``helm`` on PATH. When none works the
calling test is skipped locally and fails under ``CI=true`` (``tests/tooling.py``).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.tooling import require_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hotplug-agent"
INSTALL_HELM = REPO / "hack" / "tools" / "install-helm.sh"
RELEASE = "hotplug"
NAMESPACE = "hotplug-system"


def find_helm() -> str:
    """Absolute path of a working helm v3 binary (see the module docstring for the order)."""
    env = os.environ.get("HELM")
    if env:
        if not os.access(env, os.X_OK):
            raise AssertionError(f"HELM={env} is not an executable file")
        return env
    proc = subprocess.run(
        [str(INSTALL_HELM), "--print-path"], capture_output=True, text=True, timeout=1200, check=False
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip().splitlines()[-1]
    if proc.returncode != 2:  # 2 = no Go toolchain: fall back to PATH; anything else is a real failure
        raise AssertionError(f"install-helm.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return require_tool("helm")


@dataclass(frozen=True)
class Rendered:
    """The objects of one ``helm template`` run, in order, with their source template."""

    objects: list[dict[str, Any]]
    sources: list[str]
    text: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(str(o["kind"]) for o in self.objects)


class Helm:
    """The helm CLI bound to this repository's chart."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def template(
        self,
        values_files: tuple[Path, ...] = (),
        set_values: tuple[str, ...] = (),
        check: bool = True,
        set_json: tuple[str, ...] = (),
        namespace: str = NAMESPACE,
    ) -> Rendered | subprocess.CompletedProcess[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", namespace]
        for f in values_files:
            args += ["--values", str(f)]
        for s in set_values:
            args += ["--set", s]
        for s in set_json:  # --set turns 1.5 into a string; --set-json keeps JSON types
            args += ["--set-json", s]
        proc = self.run(*args, check=check)
        if proc.returncode != 0:
            return proc
        return parse_manifests(proc.stdout)

    def render(
        self,
        values_files: tuple[Path, ...] = (),
        set_values: tuple[str, ...] = (),
        set_json: tuple[str, ...] = (),
        namespace: str = NAMESPACE,
    ) -> Rendered:
        out = self.template(values_files, set_values, set_json=set_json, namespace=namespace)
        assert isinstance(out, Rendered)
        return out

    def lint_strict(self, values_files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
        args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
        for f in values_files:
            args += ["--values", str(f)]
        return self.run(*args, check=False)


def parse_manifests(text: str) -> Rendered:
    """Split ``helm template`` output into objects, remembering each one's ``# Source:`` template."""
    objects: list[dict[str, Any]] = []
    sources: list[str] = []
    for doc in re.split(r"^---[ \t]*$", text, flags=re.MULTILINE):
        source = ""
        for line in doc.splitlines():
            if line.startswith("# Source: "):
                source = line.removeprefix("# Source: ").strip()
                break
        obj = yaml.safe_load(doc)
        if obj is None:
            continue
        assert isinstance(obj, dict), f"non-object document from {source}: {obj!r}"
        objects.append(obj)
        sources.append(source)
    return Rendered(objects=objects, sources=sources, text=text)
