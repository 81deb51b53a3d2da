"""Prometheus metrics of the daemon, on a registry of their own (nothing global)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from collector.errors import ConfigError
from collector.outcomes import Deferred, Failed, Outcome


class Metrics:
    """Requests by status, retries, windows fetched, last success per org, run durations."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "collector_requests",
            "HTTP attempts to the Devin API, by org, source and outcome (status code, timeout, "
            "network)",
            ["org_id", "source", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "collector_retries", "Attempts beyond the first, by org and source",
            ["org_id", "source"],
            registry=self.registry,
        )
        self.windows = Counter(
            "collector_windows",
            "Windows by org, source and result: collected, failed, or deferred (not reached "
            "by a run)",
            ["org_id", "source", "result"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "collector_last_success_timestamp_seconds",
            "When a window of the org's source was last collected (Unix time)",
            ["org_id", "source"],
            registry=self.registry,
        )
        self.rate = Gauge(
            "collector_rate_limit_requests_per_second",
            "The rate each token runs at: learned from the API's answers, or the configured "
            "[api].rate_limit (by the name of the token's environment variable)",
            ["token_env"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "collector_run_duration_seconds",
            "Duration of one run for one org",
            ["org_id"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def attempt(self, org_id: str, source: str, outcome: str) -> None:
        self.requests.labels(org_id, source, outcome).inc()

    def saved(self, outcomes: Sequence[Outcome], now: float) -> None:
        for outcome in outcomes:
            org, source = outcome.target.org_id, outcome.target.source.name
            if isinstance(outcome, Failed):
                self.windows.labels(org, source, "failed").inc()
                attempts = outcome.attempts
            elif isinstance(outcome, Deferred):
                attempts = outcome.attempts  # counted per run, with those never started
            else:
                self.windows.labels(org, source, "collected").inc()
                self.last_success.labels(org, source).set(now)
                attempts = outcome.fetched.attempts
            if attempts > 1:
                self.retries.labels(org, source).inc(attempts - 1)

    def deferred(self, org_id: str, source: str, count: int) -> None:
        """Windows a run did not reach (deadline, rate limit, shutdown): not failures."""
        if count:
            self.windows.labels(org_id, source, "deferred").inc(count)

    def serve(self, host: str, port: int) -> None:
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"[metrics]: cannot serve Prometheus metrics on {host}:{port} ({exc.strerror}); "
                "choose another port"
            ) from None

    @property
    def port(self) -> int | None:
        return None if self._server is None else self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
