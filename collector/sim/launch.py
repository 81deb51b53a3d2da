"""Run the local API simulator (:mod:`collector.sim`) in the foreground: :func:`serve`.

Used by ``collector simulate``; it prints a banner saying what it serves and how to point
the collector at it. Stdlib only.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from collector.errors import ConfigError
from collector.sim.server import Simulator

__all__ = ["serve"]

ENDPOINTS_BANNER = (
    "  endpoints: /v3/organizations/{org_id}/metrics/"
    "{sessions,prs,searches,dau,wau,mau,active-users},\n"
    "             /v3/organizations/{org_id}/consumption/daily,\n"
    "             /v3/enterprise/organizations, /v3/self"
)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    token_envs: Sequence[str] = ("DEVIN_API_TOKEN",),
    orgs_from: str | None = None,
    **kwargs: Any,
) -> None:
    """Run a :class:`Simulator` (built from ``kwargs``) until SIGINT/SIGTERM.

    The first line printed is ``simulator listening on URL``; the next ones say which orgs
    it serves (``orgs_from`` names where they came from), which token it accepts and how to
    point the collector at it (``token_envs``: the variables the configuration reads).
    A port that cannot be bound raises `ConfigError` naming it.
    """
    sim = Simulator(**kwargs)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        url = sim.start(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = "the port is already in use (another simulator, or another program?)"
        else:
            problem = exc.strerror or str(exc)
        raise ConfigError(
            f"the simulator cannot listen on {host}:{port}: {problem}. "
            "Pick another --port (0 picks a free one) or --host"
        ) from None
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        print(f"simulator listening on {url}", flush=True)
        print(_banner(sim, url, token_envs, orgs_from), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(sim: Simulator, url: str, token_envs: Sequence[str], orgs_from: str | None) -> str:
    """What the simulator serves and how to point the collector at it, for people."""
    parts = urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::"):  # noqa: S104 - naming it, not binding it
        url = f"http://127.0.0.1:{parts.port}"
    if sim.orgs is None:
        orgs = "any org id"
    else:
        orgs = ", ".join(sorted(sim.orgs)) + (f" (from {orgs_from})" if orgs_from else "")
    tokens = sim.tokens
    lines = [
        f"  serves orgs: {orgs}",
        f"  accepts token: {', '.join(tokens) if tokens else '(none)'}",
        ENDPOINTS_BANNER,
        "To collect from it, set in the configuration's [api] section:",
        f'  base_url = "{url}"',
    ]
    if tokens:
        lines.append("and in the shell that runs the collector:")
        lines += [f"  export {name}={tokens[0]}" for name in dict.fromkeys(token_envs)]
    lines.append("Synthetic data only, never the real API. Ctrl-C stops it.")
    return "\n".join(lines)
