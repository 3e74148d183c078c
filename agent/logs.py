"""Logging: one format end to end, JSON lines for machines, a console renderer for people.

Named ``logs`` (not ``logging``) so it never shadows the standard library module. ``auto`` picks JSON
when stderr is not a terminal (a pod, a pipe) and the console renderer when it is.

Why through the standard library: kubernetes-asyncio, aiohttp, asyncio and Python's warnings log with
:mod:`logging`, not structlog. Every record — ours and theirs — ends in one handler whose
``structlog.stdlib.ProcessorFormatter`` renders it with the same processors, so under ``json`` every
line on stderr is one JSON object (a log collector never meets a stray plain-text line). Our own
events are filtered by level in structlog before any work is done; the libraries' own records are
shown from ``warning`` up (their info and debug chatter is not the operator's business).

The handler writes to whatever ``sys.stderr`` is at the moment of the write, so a program that shares
the terminal with a live status line (``hotplug-agent simulate``) can put a wrapper there that clears
the line first.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Final, TextIO

import structlog

from agent.config import LOG_FORMATS, LOG_LEVELS

#: Our packages: their loggers pass at the configured level (structlog already filtered them).
OWN_LOGGERS: Final = ("agent", "metrics", "simulator")


class _CurrentStderr:
    """A stream that is always the current ``sys.stderr`` (looked up at each write)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and :mod:`logging` records through one renderer onto ``stream`` (stderr)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    out: TextIO | _CurrentStderr = stream if stream is not None else _CurrentStderr()
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric = getattr(logging, level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if use_json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(numeric)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """An exception nobody caught is one more log record (one JSON line), not a bare traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("agent").critical("uncaught_exception", exc_info=(kind, value, tb))
