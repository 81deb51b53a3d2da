"""What an answer other than 200 means: the error for each status, by what the caller
should do (see `collector.errors`), with the API's own detail, shortened and scrubbed."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from collector.errors import (
    ApiError,
    AuthenticationError,
    OrgNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from collector.targets import Target
from collector.throttle import parse_retry_after


def status_error(
    target: Target, response: httpx.Response, scrub: Callable[[str], str], now: float
) -> ApiError:
    """The error a non-200 answer to a request for `target` stands for, its message
    scrubbed of tokens by `scrub`; `now` (epoch seconds) reads a Retry-After date."""
    status = response.status_code
    # scrubbed whole, before it is shortened: a cut token would no longer match
    detail = problem_detail(scrub(response.text))
    org = target.org_id
    if status == 401:
        return AuthenticationError(
            f"org {org}: the API rejected the token (401{detail}). Check that the "
            "token's environment variable holds a valid, unexpired service-user token",
            org_id=org,
            status=status,
        )
    if status == 403:
        what = "metrics" if target.source.permission.startswith("View") else "data"
        return PermissionDeniedError(
            f"org {org}: the token may not read this org's {target.source.config_name} "
            f"{what} (403{detail}). Give its service user the "
            f"{target.source.permission} permission in this org",
            org_id=org,
            status=status,
        )
    if status == 404:
        return OrgNotFoundError(
            f"org {org}: the API does not know this organization (404{detail}). Check the "
            "org id in the configuration and [api].base_url",
            org_id=org,
            status=status,
        )
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    if status == 429:
        return RateLimitedError(
            "rate limited by the API (429)",
            org_id=org,
            status=status,
            retry_after=retry_after,
        )
    if status >= 500 or status == 408:
        return ServerError(
            f"the API failed with {status}{detail}",
            org_id=org,
            status=status,
            retry_after=retry_after,
        )
    return RequestRejectedError(
        f"the API rejected the request with {status}{detail}. This is a bug in "
        "the collector or a change in the API: please report it with this message",
        org_id=org,
        status=status,
    )


def problem_detail(body: str, limit: int = 300) -> str:
    """A short, printable summary of an error body: RFC 9457 detail or 422 detail list."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return ""
    text = ""
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, str):
            text = detail
        elif isinstance(detail, list):
            text = "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
                for item in detail
                if isinstance(item, dict)
            )
        elif isinstance(data.get("title"), str):
            text = data["title"]
    text = " ".join(text.split())[:limit]
    return f": {text}" if text else ""
