"""The Devin API client: one request per (target, window) to the target's source, retried
by what went wrong.

All network I/O goes through the `httpx.Client` handed in, so tests point it at the simulator
over real HTTP. Tokens live only in `Credentials`, whose repr shows none of them; every
message built here is scrubbed of them too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import httpx

from collector.api_errors import problem_detail, status_error
from collector.config import Config
from collector.connections import make_http_client
from collector.credentials import ENTERPRISE, Credentials
from collector.errors import (
    ApiError,
    DeferredError,
    InvalidPayloadError,
    MalformedResponseError,
    NetworkError,
    PermissionDeniedError,
    RateLimitedError,
    RequestRejectedError,
    TransientApiError,
)
from collector.payload import Fetched, parse_body
from collector.targets import Target
from collector.throttle import AdaptiveRate, Clock, RateLimiter, RetryPolicy, Sleep
from collector.windows import Window

#: Where a token's learned rate starts when `[api].rate_limit` is "auto" (requests/s).
AUTO_START = 10.0

#: How many 429 answers one window may wait out (they do not count against
#: `[api].max_attempts`); one more defers it to a later run.
LIMITED_RETRIES = 50

#: Called once per HTTP attempt with the org id, the source's name and an outcome label
#: ("200", "429", "timeout", "network", ...); the daemon's metrics hang off it.
AttemptHook = Callable[[str, str, str], None]


class DevinClient:
    """Fetches session metrics with retries, a per-token rate limit and a concurrency cap."""

    def __init__(
        self,
        http: httpx.Client,
        credentials: Credentials,
        *,
        policy: RetryPolicy | None = None,
        rate_limit: float | None = None,
        learned_rates: Mapping[str, float] | None = None,
        concurrency: int = 4,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self._http = http
        self._base = str(http.base_url).rstrip("/")  # requests name their whole URL
        self._credentials = credentials
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._slots = threading.BoundedSemaphore(concurrency)
        # One limiter per token, shared by every request on it: what one worker learns
        # (a 429, a rate that works) paces all of them. A token starts where an earlier run
        # left it (`learned_rates`, by the name of its variable), else at the ceiling or at
        # AUTO_START.
        learned = learned_rates or {}
        self._limiters = {}
        for token_id in credentials.token_ids():
            known = learned.get(credentials.label(token_id))
            start = min(known, rate_limit or known) if known else rate_limit or AUTO_START
            self._limiters[token_id] = RateLimiter(
                start,
                clock=monotonic,
                sleep=sleep,
                adaptive=AdaptiveRate(start=start, learned=bool(known), ceiling=rate_limit,
                                      clock=monotonic),
            )

    def __repr__(self) -> str:
        return f"DevinClient(base_url={str(self._http.base_url)!r}, {self._credentials!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DevinClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, target: Target, window: Window, *, deadline: float | None = None) -> Fetched:
        """Fetch `target` over `window`, retrying transient failures.

        `deadline` is a `monotonic` instant after which no new attempt or wait starts.
        Raises a subclass of `ApiError`; see `collector.errors` for which to retry; or
        `DeferredError` when no request can start before `deadline` (or the API asked the
        token to wait longer than the cap). Messages name the problem, not the target and
        window: the caller labels them.
        """
        token = self._credentials.token(target.org_id)
        limiter = self._limiters[self._credentials.token_id(target.org_id)]
        attempt = waited = 0
        while True:
            attempt += 1
            sent_at = self._wait_for_limiter(limiter, attempt, deadline)
            try:
                fetched = self._attempt(target, window, token, attempt)
            except ApiError as exc:
                # every request made for the window counts, the retries before this one too
                exc.attempts = attempt
                if not isinstance(exc, TransientApiError):
                    raise  # not retried: 401, 403, 404, 422, a bad answer
                retry_after = exc.retry_after
                token_waits = False
                if exc.status == 429:
                    # pacing, not failure: the limiter slows the token down, and the wait
                    # does not use up the window's attempts (within a generous bound)
                    token_waits = limiter.limited(sent_at, retry_after)
                    waited += 1
                    if waited > LIMITED_RETRIES:
                        raise DeferredError(
                            f"the API answered {waited} requests for this window with 429; "
                            "the window stays due for a later run",
                            attempts=attempt,
                        ) from None
                if retry_after is not None and retry_after > self._policy.retry_after_cap:
                    limiter.block_for(retry_after)
                    limited = RateLimitedError(
                        f"the API asks to wait {retry_after:.0f}s, "
                        f"longer than retry_after_cap ({self._policy.retry_after_cap:.0f}s); "
                        "the window stays due for a later run",
                        org_id=target.org_id,
                        status=exc.status,
                        retry_after=retry_after,
                    )
                    limited.attempts = attempt
                    raise limited from None
                if attempt - waited >= self._policy.max_attempts:
                    raise
                delay = self._policy.delay(attempt, retry_after)
                if token_waits and retry_after is not None:
                    # Every request on this token waits, not only this one; the limiter
                    # sleeps when the next attempt asks it for a slot.
                    limiter.block_for(delay)
                    continue
                # This request waits; the token goes on at the rate the 429 taught it.
                if deadline is not None and self._monotonic() + delay > deadline:
                    if exc.status == 429:
                        raise DeferredError(
                            "the run's deadline comes before the API's rate limit lets this "
                            "window be asked again",
                            attempts=attempt,
                        ) from None
                    raise
                self._sleep(delay)
            else:
                limiter.success(sent_at)
                return fetched

    def _wait_for_limiter(
        self, limiter: RateLimiter, attempt: int, deadline: float | None
    ) -> float:
        """Wait for the token's next slot; `DeferredError` when it comes later than
        `retry_after_cap` from now, or after `deadline` (a block that arrives while this
        caller waits counts too)."""
        cap = self._policy.retry_after_cap
        until = self._monotonic() + cap
        if deadline is not None:
            until = min(until, deadline)
        sent_at = limiter.acquire(until)
        if sent_at is not None:
            return sent_at
        blocked = limiter.blocked_for()
        if blocked > cap:
            raise DeferredError(
                f"this token may send again only in {blocked:.0f}s (a Retry-After, or the rate "
                "it learned from 429s), longer than retry_after_cap",
                attempts=attempt - 1,
            )
        raise DeferredError(
            "the run's deadline comes before the rate limit allows another request",
            attempts=attempt - 1,
        )

    def whoami(self, org_id: str) -> dict[str, object]:
        """Who `org_id`'s token is: the JSON object ``GET /v3/self`` answers (its shape
        depends on ``principal_type``; it never holds the token). Transient failures are
        retried up to the policy's attempts; errors are mapped as `fetch` maps them (401
        `AuthenticationError`, 403 `PermissionDeniedError`, a 404 `RequestRejectedError`,
        `NetworkError` ...). Not counted by the `on_attempt` hook."""
        return self._get_object(
            org_id, "/v3/self", [],
            forbidden="the API will not say who the token is (403{detail}); some pages "
            "say GET /v3/self needs the ReadAccountMeta permission",
        )

    def organizations(self) -> list[dict[str, object]]:
        """Every organization of the enterprise (``GET /v3/enterprise/organizations``,
        followed page by page), with the `ENTERPRISE` token. Errors as `whoami`'s."""
        items: list[dict[str, object]] = []
        after: str | None = None
        for _ in range(10_000):  # a cursor that never ends is the API's bug, not a loop
            params: list[tuple[str, str | int | float | bool | None]] = [("first", 200)]
            if after is not None:
                params.append(("after", after))
            page = self._get_object(
                ENTERPRISE, "/v3/enterprise/organizations", params,
                forbidden="the token may not list the enterprise's organizations "
                "(403{detail}): give its service user the ManageOrganizations permission",
            )
            found = page.get("items")
            if not isinstance(found, list):
                raise InvalidPayloadError(
                    "GET /v3/enterprise/organizations answered without a list of items",
                    org_id=ENTERPRISE, status=200,
                )
            items += [item for item in found if isinstance(item, dict)]
            cursor = page.get("end_cursor")
            if not page.get("has_next_page") or not isinstance(cursor, str):
                return items
            after = cursor
        return items

    def _get_object(
        self, key: str, path: str, params: list[tuple[str, str | int | float | bool | None]],
        *, forbidden: str,
    ) -> dict[str, object]:
        """GET `path` with `key`'s token, retried like `fetch`; the JSON object answered.
        `forbidden` is the 403 message (``{detail}`` takes the API's words)."""
        token = self._credentials.token(key)
        limiter = self._limiters[self._credentials.token_id(key)]
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_limiter(limiter, attempt, None)
            try:
                with self._slots:
                    response = self._http.get(
                        path, params=params, headers={"Authorization": f"Bearer {token}"}
                    )
                if response.status_code == 200:
                    body = json.loads(response.content)
                    if not isinstance(body, dict):
                        raise InvalidPayloadError(
                            f"GET {path} answered 200 with JSON that is not an object",
                            org_id=key, status=200,
                        )
                    return body
                status, detail = response.status_code, problem_detail(
                    self._credentials.scrub(response.text)
                )
                if status == 403:
                    raise PermissionDeniedError(
                        forbidden.format(detail=detail), org_id=key, status=status
                    )
                if status == 404:
                    raise RequestRejectedError(
                        f"the API has no GET {path} (404{detail}): check [api].base_url",
                        org_id=key, status=status,
                    )
                raise status_error(Target(key), response, self._credentials.scrub, self._clock())
            except ValueError:  # not JSON, or not UTF-8
                error: TransientApiError = MalformedResponseError(
                    f"GET {path} answered 200 with a body that is not JSON",
                    org_id=key, status=200,
                )
            except httpx.TimeoutException as exc:
                error = NetworkError(
                    f"the API did not answer in time ({type(exc).__name__})", org_id=key
                )
            except (httpx.TransportError, httpx.DecodingError) as exc:
                error = NetworkError(
                    self._credentials.scrub(f"network error ({type(exc).__name__}: {exc})"),
                    org_id=key,
                )
            except TransientApiError as exc:
                error = exc
            cap = self._policy.retry_after_cap
            if attempt >= self._policy.max_attempts or (error.retry_after or 0) > cap:
                error.attempts = attempt
                raise error
            self._sleep(self._policy.delay(attempt, error.retry_after))

    def rates(self, *, learned_only: bool = False) -> dict[str, float]:
        """The rate each token runs at now, by the name of its environment variable (what
        status, dry runs and Prometheus show). With `learned_only`, only the tokens whose
        limit the API has shown (a 429): a token that was never pushed has learned nothing."""
        return {
            self._credentials.label(token_id): limiter.rate
            for token_id, limiter in self._limiters.items()
            if not learned_only
            or (limiter.adaptive is not None and limiter.adaptive.failed_at is not None)
        }

    def _attempt(self, target: Target, window: Window, token: str, attempt: int) -> Fetched:
        source = target.source
        # the whole URL, query included: httpx merging a relative URL with its base and with
        # `params=` parses it three times, a third of a request's CPU
        query = f"time_after={window.start}&time_before={window.end}"
        if params := target.params():
            query = f"{query}&{urlencode(params)}"
        url = f"{self._base}{source.url(target.org_id)}?{query}"
        try:
            with self._slots:
                response = self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException as exc:
            self._note(target, "timeout")
            raise NetworkError(
                f"the API did not answer in time ({type(exc).__name__})",
                org_id=target.org_id,
            ) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            self._note(target, "network")
            raise NetworkError(
                self._credentials.scrub(
                    f"network error ({type(exc).__name__}: {exc})"
                ),
                org_id=target.org_id,
            ) from None
        status = response.status_code
        self._note(target, str(status))
        if status == 200:
            metrics, text = parse_body(
                source.model, response.content, org_id=target.org_id, what=source.name
            )
            return Fetched(metrics, text, self._clock(), attempt)
        raise status_error(target, response, self._credentials.scrub, self._clock())

    def _note(self, target: Target, outcome: str) -> None:
        if self._on_attempt is not None:
            self._on_attempt(target.org_id, target.source.name, outcome)


def make_client(
    config: Config,
    credentials: Credentials,
    *,
    concurrency: int | None = None,
    on_attempt: AttemptHook | None = None,
    transport: httpx.BaseTransport | None = None,
    learned_rates: Mapping[str, float] | None = None,
) -> DevinClient:
    """The client `config` describes, for the tokens in `credentials`, each starting at the
    rate an earlier run learned for it when given."""
    api = config.api
    return DevinClient(
        make_http_client(config, concurrency=concurrency, transport=transport),
        credentials,
        policy=RetryPolicy(
            max_attempts=api.max_attempts,
            backoff_base=api.backoff_base,
            backoff_max=api.backoff_max,
            retry_after_cap=api.retry_after_cap,
        ),
        rate_limit=None if api.rate_limit == "auto" else api.rate_limit,
        learned_rates=learned_rates,
        concurrency=concurrency or api.concurrency,
        on_attempt=on_attempt,
    )
