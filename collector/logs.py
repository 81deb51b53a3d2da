"""Logging: plain text or JSON lines on stderr, through structlog's stdlib formatter.

httpx and httpcore log every request URL at INFO and DEBUG; they are held at WARNING. A filter
on the handler replaces any registered secret with ``***`` in every record, whatever logged it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_SECRETS: set[str] = set()


def register_secrets(*secrets: str) -> None:
    """Secrets (tokens) to scrub from every log line from now on."""
    _SECRETS.update(s for s in secrets if s)


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        message = record.getMessage()
        scrubbed = message
        for secret in _SECRETS:
            scrubbed = scrubbed.replace(secret, "***")
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def configure_logging(
    fmt: str = "text", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Route every logger to one handler on `stream` (stderr), text or JSON lines."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Scrub())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
