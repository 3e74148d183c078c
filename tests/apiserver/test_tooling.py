"""tests/tooling.require_tool: skip locally, fail under CI=true."""

from __future__ import annotations

import pytest

from tests.tooling import require_tool


def test_present_tool_returns_its_path() -> None:
    assert require_tool("sh").endswith("/sh")


def test_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_tool("no-such-tool-hotplug")


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool("no-such-tool-hotplug")
