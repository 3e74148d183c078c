"""How the chart tests find helm, and that a missing helm fails under CI=true instead of skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart import helm as helm_module


def fake_installer(tmp_path: Path, exit_code: int, stdout: str = "") -> Path:
    script = tmp_path / "install-helm.sh"
    script.write_text(f"#!/bin/sh\necho '{stdout}'\necho 'install-helm: stub' >&2\nexit {exit_code}\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def no_helm_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELM", raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(helm_module, "INSTALL_HELM", fake_installer(tmp_path, 2))


@pytest.mark.usefixtures("no_helm_anywhere")
def test_no_go_no_helm_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="helm"):
        helm_module.find_helm()


@pytest.mark.usefixtures("no_helm_anywhere")
def test_no_go_no_helm_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="helm"):
        helm_module.find_helm()


def test_failed_build_is_an_error_not_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELM", raising=False)
    monkeypatch.setattr(helm_module, "INSTALL_HELM", fake_installer(tmp_path, 1))
    with pytest.raises(AssertionError, match=r"install-helm\.sh failed"):
        helm_module.find_helm()


def test_installer_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELM", raising=False)
    monkeypatch.setattr(helm_module, "INSTALL_HELM", fake_installer(tmp_path, 0, "/opt/x/helm"))
    assert helm_module.find_helm() == "/opt/x/helm"


def test_helm_env_wins_and_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = fake_installer(tmp_path, 0)
    monkeypatch.setenv("HELM", str(binary))
    assert helm_module.find_helm() == str(binary)
    monkeypatch.setenv("HELM", str(tmp_path / "missing"))
    with pytest.raises(AssertionError, match="not an executable"):
        helm_module.find_helm()


def test_install_script_pins_a_v3_release() -> None:
    text = helm_module.INSTALL_HELM.read_text()
    assert "\nHELM_VERSION=v3." in text
    assert ".cache/bin" in text
