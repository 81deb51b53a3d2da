"""Logging: plain text or JSON lines on stderr, through structlog's stdlib formatter.

Fields passed with ``extra=`` (``log.info("run", extra={"org": org, "due": 3})``) are
rendered as top-level keys of the JSON object, or as ``key=value`` pairs after the event in
text. httpx and httpcore log every request URL at INFO and DEBUG; they are held at WARNING.
A filter on the handler replaces any registered secret with ``***`` in every record, in its
message and in its extra fields, whatever logged it.
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


def _render_text(_logger: object, _name: str, event: structlog.types.EventDict) -> str:
    """``<time> [<level>] <event> key=value ... [<logger>]``: fields right after the event,
    in the order given, so a line reads ``run org=org-a due=3 collected=3 ...``."""
    stamp = event.pop("timestamp", "")
    level = event.pop("level", "")
    message = event.pop("event", "")
    logger = event.pop("logger", None)
    trace = event.pop("exception", None)
    parts = [f"{stamp} [{level:<7}] {message}"]
    parts += [f"{key}={_text_value(value)}" for key, value in event.items()]
    if logger:
        parts.append(f"[{logger}]")
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
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else _render_text
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
                structlog.processors.format_exc_info,  # a traceback as text, no locals
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
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
