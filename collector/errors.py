"""Every error the collector raises, grouped by what the caller should do about it.

    CollectorError                     root: catch this to catch everything of ours
    ├── ConfigError                    fix the configuration or command line (exit 2)
    ├── SchemaOutOfDateError           run `collector db upgrade` (exit 2)
    ├── StorageError                   the database failed; the window stays due, retry later
    ├── DeferredError                  no request was started (deadline, a wait the API asked
    │                                  for): not a failure; the window stays due as it was
    └── ApiError                       something went wrong talking to the Devin API
        ├── TransientApiError          retried with backoff; the window stays due if it persists
        │   ├── RateLimitedError       429 (carries the server's Retry-After, if any)
        │   ├── ServerError            5xx
        │   ├── NetworkError           timeouts, resets, refused connections, truncated bodies
        │   └── MalformedResponseError 200 whose body is not JSON
        ├── AccessError                the org cannot be read until a human acts; not retried
        │   ├── AuthenticationError    401: the token is missing, wrong or expired
        │   ├── PermissionDeniedError  403: the token lacks ViewOrgMetrics for the org
        │   └── OrgNotFoundError       404: the org id is wrong
        ├── RequestRejectedError       400/422: the API refused the request (a bug: report it)
        └── InvalidPayloadError        200 with a body that breaks the schema; nothing stored

Messages name what happened and what to do. None of them ever contains a token.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of every error raised by the collector."""


class ConfigError(CollectorError):
    """The configuration file, the environment or the command line is wrong."""


class SchemaOutOfDateError(CollectorError):
    """The database schema is older than this version of the collector."""


class StorageError(CollectorError):
    """The database refused or failed a write; the work stays due."""


class DeferredError(CollectorError):
    """The client did not start a request: the run's deadline, or a wait the API asked this
    token for, comes first. `attempts` counts the requests already made for the window."""

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts


class ApiError(CollectorError):
    """A request to the Devin API failed."""

    def __init__(self, message: str, *, org_id: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.org_id = org_id
        self.status = status
        self.attempts = 1


class TransientApiError(ApiError):
    """A failure that may go away by itself: retry later.

    `retry_after` is the server's wish in seconds (a Retry-After header), when it said one.
    """

    def __init__(
        self,
        message: str,
        *,
        org_id: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, org_id=org_id, status=status)
        self.retry_after = retry_after


class RateLimitedError(TransientApiError):
    """HTTP 429, or the client holding a token back because the API asked it to wait."""


class ServerError(TransientApiError):
    """HTTP 5xx."""


class NetworkError(TransientApiError):
    """The request or the response did not make it through the network whole."""


class MalformedResponseError(TransientApiError):
    """A 200 whose body is not JSON (HTML from a proxy, an empty body)."""


class AccessError(ApiError):
    """The organization cannot be read until someone fixes the token, role or org id."""


class AuthenticationError(AccessError):
    """HTTP 401."""


class PermissionDeniedError(AccessError):
    """HTTP 403."""


class OrgNotFoundError(AccessError):
    """HTTP 404."""


class RequestRejectedError(ApiError):
    """HTTP 400 or 422: the collector sent something the API does not accept."""


class InvalidPayloadError(ApiError):
    """A 200 whose JSON does not match the published schema."""
