"""Helpers for tests that need external tools (kubectl, helm, promtool, ...).

Locally a missing tool skips the test; in CI (`CI=true`) it fails, so a broken CI image cannot
silently turn tool-backed tests into skips.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Return the tool's absolute path; skip (locally) or fail (CI=true) when it is not on PATH."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"required tool {name!r} not found on PATH"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: missing tools fail instead of skipping)")
    pytest.skip(message)
