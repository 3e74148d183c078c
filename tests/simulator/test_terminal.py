"""`hotplug-agent simulate` (what `make run` runs) on a terminal: the live status line fits the width,
no log line lands on it, the last figures stay on screen, and the summary adds up."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from simulator.cli import StatusLine

CLEAR = "\r\x1b[K"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BIN = Path(sys.executable).parent / "hotplug-agent"


def test_status_line_is_cleared_before_a_log_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=(0, 0): os.terminal_size((30, 24)))
    screen = io.StringIO()
    status = StatusLine(screen)
    logs = status.guard(screen)
    status.show("[  1.0s] hot plugs 10: 2 done, 0 rejected")
    logs.write("a log line\n")
    status.show("[  1.1s] short")
    status.finish("[  1.2s] final")
    assert screen.getvalue() == (
        f"{CLEAR}[  1.0s] hot plugs 10: 2 don…{CLEAR}a log line\n{CLEAR}[  1.1s] short{CLEAR}[  1.2s] final\n"
    )


def _run_on_a_terminal(argv: list[str], columns: int, timeout: float) -> str:
    """Run ``argv`` with stdout and stderr on one pseudo-terminal of ``columns``; return what it drew."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    # COLUMNS/LINES (which pytest may export) would override the terminal's own size
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_simulate_on_a_narrow_terminal() -> None:
    if not BIN.exists():
        pytest.skip("the hotplug-agent script is not installed next to this interpreter")
    columns = 72
    # Failing migrations make the agent log warnings while the status line is live.
    argv = [str(BIN), "simulate", "--vms", "40", "--failure-rate", "0.3", "--seed", "3"]
    screen = _run_on_a_terminal(argv, columns, timeout=120)
    lines = screen.split("\n")
    statuses = [seg for line in lines for seg in line.split(CLEAR)[1:] if seg.startswith("[")]
    assert len(statuses) > 5
    assert all(len(seg) <= columns - 1 for seg in statuses), max(statuses, key=len)
    # A log line starts on a cleared line: it never follows a status segment on the same line.
    log_lines = [
        line for line in lines if "migration_attempt_failed" in line or "warning" in ANSI.sub("", line)
    ]
    assert log_lines, screen[-2000:]
    for line in log_lines:
        before = line.rsplit(CLEAR, 1)
        assert len(before) == 1 or not before[1].startswith("["), repr(line)
        assert "hot plugs" not in ANSI.sub("", line.split(CLEAR)[-1]), repr(line)
    # The final tick: the last status segment ends its line, before the summary.
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("hot-plug requests:"))
    assert lines[summary_at - 1].split(CLEAR)[-1].startswith("[")
    first = re.match(
        r"hot-plug requests: \d+ +completed: \d+ +blocked at admission: \d+ +not completed: (\d+)",
        lines[summary_at],
    )
    assert first is not None, lines[summary_at]
    breakdown = lines[summary_at + 1]
    match = re.match(r"not completed \((\d+)\), by the cluster's state: (.*)$", breakdown)
    assert match is not None and match.group(1) == first.group(1), breakdown
    counts = [int(n) for n in re.findall(r"(?:^|, )[a-z-]+=(\d+)", match.group(2))]
    assert sum(counts) == int(first.group(1)), breakdown
    if "pending=" in breakdown:
        assert re.search(r"pending=\d+ \(the agent's Event says [a-z-]+=\d+", breakdown), breakdown
