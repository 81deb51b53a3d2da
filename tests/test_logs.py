"""Log lines: `extra=` fields as JSON keys or key=value text, secrets scrubbed everywhere."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collector.cli import main
from collector.logs import configure_logging, register_secrets, reset_logging
from collector.sim import Simulator, TokenGrant
from collector.windows import due_now
from tests.helpers import TOKEN, daemon_config_file, run_daemon_until, upgrade_folder

SECRET = "cog_log_secret_5b7d31"
log = logging.getLogger("collector.daemon")



def lines(fmt: str, *records: tuple[int, str, tuple[Any, ...], dict[str, Any]]) -> list[str]:
    stream = io.StringIO()
    configure_logging(fmt, "DEBUG", stream)
    for level, msg, args, extra in records:
        log.log(level, msg, *args, extra=extra)
    return stream.getvalue().splitlines()


RUN = (logging.INFO, "run", (), {"org": "org-alpha", "due": 3, "collected": 2, "failed": 1,
                                 "seconds": 0.25, "ok": False})


def test_extra_fields_are_top_level_json_keys() -> None:
    (line,) = lines("json", RUN)
    record = json.loads(line)
    timestamp = record.pop("timestamp")
    assert record == {"event": "run", "level": "info", "logger": "collector.daemon",
                      "org": "org-alpha", "due": 3, "collected": 2, "failed": 1,
                      "seconds": 0.25, "ok": False}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", timestamp)


def test_extra_fields_are_key_value_pairs_after_the_event_in_text() -> None:
    # right after the event, in the order the code passed them; the logger last
    (line,) = lines("text", RUN)
    assert re.fullmatch(
        r"\S+Z \[info\s*\] run "
        r"org=org-alpha due=3 collected=2 failed=1 seconds=0\.25 ok=False \[collector\.daemon\]",
        line,
    ), line


class Holder:
    def __str__(self) -> str:
        return f"Holder({SECRET})"


def test_secrets_are_scrubbed_from_extra_fields_messages_and_tracebacks() -> None:
    register_secrets(SECRET)
    extra = {"error": f"401 for Bearer {SECRET}", "detail": {"token": SECRET, "n": 1},
             "tokens": [SECRET, "other"], "holder": Holder(), "due": 3}
    (line,) = lines("json", (logging.WARNING, "failed %s", (SECRET,), extra))
    record = json.loads(line)
    assert record["event"] == "failed ***"
    assert record["error"] == "401 for Bearer ***"
    assert record["detail"] == {"token": "***", "n": 1}
    assert record["tokens"] == ["***", "other"]
    assert record["holder"] == "Holder(***)"
    assert record["due"] == 3
    assert SECRET not in line
    (text,) = lines("text", (logging.WARNING, "failed", (), {"error": f"x {SECRET}"}))
    assert text.endswith("failed error='x ***' [collector.daemon]"), text
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    try:
        raise RuntimeError(f"server said {SECRET}")
    except RuntimeError:
        log.exception("crashed", extra={"org": "org-alpha"})
    record = json.loads(stream.getvalue())
    assert record["org"] == "org-alpha"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("RuntimeError: server said ***")
    assert SECRET not in stream.getvalue()


def test_reset_logging_restores_the_root_logger() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("httpx").level)
    configure_logging("json", "DEBUG", io.StringIO())
    configure_logging("text", "INFO", io.StringIO())
    assert root.level == logging.INFO
    assert len(root.handlers) == 1
    assert root.handlers[0] not in before[0]
    assert logging.getLogger("httpx").level == logging.WARNING
    reset_logging()
    assert (list(root.handlers), root.level, logging.getLogger("httpx").level) == before
    reset_logging()  # twice is harmless
    assert list(root.handlers) == before[0]


def one_org_config(folder: Path, base_url: str, extra: str = "") -> Path:
    """`folder`/c.toml: org-alpha's sessions in hourly windows, one request at a time."""
    config = folder / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{folder / "c.db"}"\n'
        f'[api]\nbase_url = "{base_url}"\nconcurrency = 1\n'
        f'[windows]\nsize = "1h"\n{extra}[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n'
    )
    return config


def test_collect_logs_json_with_fields_as_keys(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}) as sim:
        config = one_org_config(tmp_path, sim.base_url)
        run = CliRunner()
        env = {"DEVIN_API_TOKEN": TOKEN}
        assert run.invoke(main, ["--config", str(config), "db", "upgrade"], env=env).exit_code == 0
        before = {str(w) for w in due_now(time.time(), 3600)}
        result = run.invoke(main, ["--config", str(config), "--log-format", "json", "-v",
                                   "collect"], env=env, catch_exceptions=False)
        after = {str(w) for w in due_now(time.time(), 3600)}
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stderr.splitlines()
               if line.startswith("{")]
    collected = [r for r in records if r["event"] == "window collected"]
    assert [(r["level"], r["logger"], r["target"], r["attempts"], r["settled"])
            for r in collected] == [("debug", "collector.collection", "org-alpha", 1, False)] * 2
    assert {r["window"] for r in collected} in (before, after)  # (an hour may turn meanwhile)
    assert TOKEN not in result.stderr


def test_json_from_the_file_covers_the_warnings_of_loading_it(tmp_path: Path) -> None:
    # [logging] format = "json" and no --log-format: the load's warnings are JSON lines too
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}) as sim:
        config = one_org_config(
            tmp_path, sim.base_url, '[schedule]\ninterval = "2h"\n[logging]\nformat = "json"\n')
        run = CliRunner()
        env = {"DEVIN_API_TOKEN": TOKEN}
        for args in (["db", "upgrade"], ["collect"]):
            result = run.invoke(main, ["--config", str(config), *args], env=env,
                                catch_exceptions=False)
            assert result.exit_code == 0, result.output
            records = [json.loads(line) for line in result.stderr.splitlines()]
            warnings = [r for r in records if r["logger"] == "collector.config"]
            assert len(warnings) == 1, result.stderr
            warning = warnings[0]
            assert warning["level"] == "warning"
            assert warning["event"].startswith(
                f"{config}: [schedule].interval (2h) is longer than [windows].size (1h)"
            )
            assert re.fullmatch(r"\S+Z", warning["timestamp"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_daemon_start_line_has_its_values_as_fields(tmp_path: Path, fmt: str) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        daemon_config_file(tmp_path, sim.base_url)
        upgrade_folder(tmp_path)
        code, stderr = run_daemon_until(
            tmp_path, lambda: sim.count(status=200) >= 1, "--log-format", fmt)
    assert code == 0, stderr
    if fmt == "json":
        (start,) = [r for r in map(json.loads, stderr.splitlines())
                    if r["event"] == "collector running"]
        assert (start["level"], start["logger"]) == ("info", "collector.daemon")
        assert (start["orgs"], start["window_s"], start["interval_s"]) == (2, 300, 2)
    else:
        (start,) = [line for line in stderr.splitlines() if "collector running" in line]
        assert re.fullmatch(
            r"\S+Z \[info\s*\] collector running orgs=2 window_s=300 interval_s=2 "
            r"\[collector\.daemon\]", start,
        ), start
