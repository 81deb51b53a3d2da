"""Logging: plain text or JSON lines on stderr, one formatter on the stdlib's logging.

Fields passed with ``extra=`` (``log.info("run", extra={"org": org, "due": 3})``) are
rendered as top-level keys of the JSON object, or as ``key=value`` pairs after the event in
text. httpx and httpcore log every request URL at INFO and DEBUG; they are held at WARNING.
A filter on the handler replaces any registered secret with ``***`` in every record, in its
message and in its extra fields, whatever logged it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

_SECRETS: set[str] = set()


def register_secrets(*secrets: str) -> None:
    """Secrets (tokens) to scrub from every log line from now on."""
    _SECRETS.update(s for s in secrets if s)


#: Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


def _scrub_text(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):  # a secret inside another: longest
        text = text.replace(secret, "***")
    return text


def _scrub_value(value: object) -> object:
    """`value` with every secret replaced; the same object when it holds none."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        scrubbed = _scrub_text(value)
        return value if scrubbed == value else scrubbed
    if isinstance(value, dict):
        items = {k: _scrub_value(v) for k, v in value.items()}
        changed = any(items[k] is not v for k, v in value.items())
        return items if changed else value
    if isinstance(value, list | tuple):
        seq = [_scrub_value(v) for v in value]
        changed = any(a is not b for a, b in zip(seq, value, strict=True))
        return (seq if isinstance(value, list) else tuple(seq)) if changed else value
    text = str(value)  # rendered with str() anyway: keep it only when it holds no secret
    scrubbed = _scrub_text(text)
    return value if scrubbed == text else scrubbed


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        message = record.getMessage()
        scrubbed = _scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                clean = _scrub_value(value)
                if clean is not value:
                    setattr(record, key, clean)
        if record.exc_info:
            # rendered here, scrubbed, and handed on as text (the `exception` field)
            trace = logging.Formatter().formatException(record.exc_info)
            record.exception = _scrub_text(trace)
            record.exc_info, record.exc_text = None, None
        return True


class _Formatter(logging.Formatter):
    """One line per record: ``<time> [<level>] <event> key=value ... [<logger>]`` in text,
    fields right after the event in the order given (``run org=org-a due=3 ...``); or a JSON
    object with ``event``, ``level``, ``logger``, every field, and ``timestamp``."""

    def __init__(self, *, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            key: value for key, value in vars(record).items()
            if key not in _RECORD_ATTRS and not key.startswith("_") and key != "exception"
        }
        trace = getattr(record, "exception", None)
        if trace is None and record.exc_info:
            trace = self.formatException(record.exc_info)  # a plain traceback, no locals
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        level = record.levelname.lower()
        if self.as_json:
            event = {"event": record.getMessage(), "level": level, "logger": record.name,
                     **fields, "timestamp": stamp}
            if trace:
                event["exception"] = trace
            return json.dumps(event, default=str)
        parts = [f"{stamp} [{level:<7}] {record.getMessage()}"]
        parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
        parts.append(f"[{record.name}]")
        line = " ".join(parts)
        return f"{line}\n{trace}" if trace else line


def _text_value(value: object) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in "='\"" for c in text) else text


_NOISY = ("httpx", "httpcore", "apscheduler", "alembic")
#: The root logger's handlers and level, and the noisy loggers' levels, before the first
#: `configure_logging`; `reset_logging` puts them back.
_saved: tuple[list[logging.Handler], int, dict[str, int]] | None = None


def configure_logging(
    fmt: str = "text", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Route every logger to one handler on `stream` (stderr), text or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Scrub())
    handler.setFormatter(_Formatter(as_json=fmt == "json"))
    global _saved
    root = logging.getLogger()
    if _saved is None:
        _saved = (list(root.handlers), root.level,
                  {name: logging.getLogger(name).level for name in _NOISY})
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def reset_logging() -> None:
    """Undo `configure_logging`: the root logger gets back the handlers and level it had
    before the first call, and the noisy loggers their levels. Registered secrets stay.
    Safe to call any time (tests call it after each test)."""
    global _saved
    if _saved is None:
        return
    handlers, level, levels = _saved
    _saved = None
    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(level)
    for name, noisy_level in levels.items():
        logging.getLogger(name).setLevel(noisy_level)


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def held_logs() -> Iterator[list[logging.LogRecord]]:
    """Hold back what is logged inside the block (loading the configuration, before it
    says how to log) and hand the records over in the list: `replay_logs` writes them once
    logging is configured. If the block raises, they are written at once, where they
    would have gone."""
    holder = _Holder()
    root = logging.getLogger()
    handlers = root.handlers
    root.handlers = [holder]
    failed = True
    try:
        yield holder.records
        failed = False
    finally:
        root.handlers = handlers
        if failed:
            replay_logs(holder.records)


def replay_logs(records: list[logging.LogRecord]) -> None:
    """Write held records through the handlers in place now, at the levels set now."""
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
    records.clear()
