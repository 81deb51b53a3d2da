"""The response models, as the published schemas describe them, and their parsing. Pure.

Counts are strict: a count that is missing, null, negative, fractional, a string or a boolean
rejects the whole response. Bucket keys the schema lists default to 0 when absent; bucket keys
it does not list (a new origin or size) are kept, so they reach the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator

from collector.errors import InvalidPayloadError, MalformedResponseError

ORIGINS: tuple[str, ...] = (
    "api", "automation", "code_scan", "desktop", "jira", "linear", "slack", "teams", "webapp",
)
SIZES: tuple[str, ...] = ("xs", "s", "m", "l", "xl")

M = TypeVar("M", bound=BaseModel)

Count = Annotated[int, Field(strict=True, ge=0)]
Buckets = dict[str, Count]


def _with_defaults(value: Buckets, keys: tuple[str, ...]) -> Buckets:
    return {key: value.get(key, 0) for key in keys} | value


class SessionMetrics(BaseModel):
    """A validated 200 body of ``GET /v3/organizations/{org_id}/metrics/sessions``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sessions_created_count: Count
    sessions_created_with_playbook_count: Count
    sessions_created_with_search_count: Count
    sessions_with_merged_prs_count: Count
    avg_acus_per_session: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
    sessions_created_by_origin: Buckets
    sessions_created_by_size: Buckets
    sessions_with_merged_prs_by_size: Buckets

    @field_validator("sessions_created_by_origin")
    @classmethod
    def _origin_defaults(cls, value: Buckets) -> Buckets:
        return _with_defaults(value, ORIGINS)

    @field_validator("sessions_created_by_size", "sessions_with_merged_prs_by_size")
    @classmethod
    def _size_defaults(cls, value: Buckets) -> Buckets:
        return _with_defaults(value, SIZES)


Acus = Annotated[float, Field(strict=False, ge=0, allow_inf_nan=False)]
Instant = Annotated[int, Field(strict=True)]


class PrMetrics(BaseModel):
    """A validated 200 body of ``GET .../metrics/prs``: PRs Devin authored, by state as of
    the call (the optional ``prs_taken_over_*`` counts stay in the raw body)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prs_created_count: Count
    prs_opened_count: Count
    prs_closed_count: Count
    prs_merged_count: Count


class SearchMetrics(BaseModel):
    """A validated 200 body of ``GET .../metrics/searches``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    searches_created_count: Count


class ActiveUsers(BaseModel):
    """One bucket of ``GET .../metrics/dau|wau|mau``: distinct users active in it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    start_time: Instant
    end_time: Instant
    active_users: Count


class ActiveUsersList(RootModel[list[ActiveUsers]]):
    """A validated 200 body of ``GET .../metrics/dau|wau|mau``: buckets, ascending."""

    model_config = ConfigDict(frozen=True)


class AcusByProduct(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    devin: Acus = 0.0
    cascade: Acus = 0.0
    terminal: Acus = 0.0
    review: Acus | None = None


class ConsumptionDay(BaseModel):
    """One billing day of ``GET .../consumption/daily``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    date: Instant
    acus: Acus
    acus_by_product: AcusByProduct


class Consumption(BaseModel):
    """A validated 200 body of ``GET .../consumption/daily``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    total_acus: Acus
    consumption_by_date: list[ConsumptionDay]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A validated answer for one target and window, and when it arrived (Unix seconds).

    `body` is the response's JSON text as the API sent it; it is stored as the window's raw
    body, so fields the API adds later can be read without fetching again.
    """

    metrics: BaseModel
    body: str
    fetched_at: float
    attempts: int

    @property
    def raw(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


def parse_body(model: type[M], body: bytes, *, org_id: str, what: str) -> tuple[M, str]:
    """Decode and validate a 200 body against `model` (`what` names it in messages).
    Returns the model and the body as text.

    Raises `MalformedResponseError` (retryable) when the body is not JSON at all, and
    `InvalidPayloadError` (not retryable) when it is JSON that breaks the schema.
    """
    try:
        return model.model_validate_json(body), body.decode("utf-8")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] in ("json_invalid", "json_type"):
            preview = "empty body" if not body.strip() else f"{len(body)} bytes that are not JSON"
            raise MalformedResponseError(
                f"org {org_id}: the API answered 200 with {preview}; will retry",
                org_id=org_id,
                status=200,
            ) from None
        if errors and errors[0]["type"] == "model_type":
            raise InvalidPayloadError(
                f"org {org_id}: the API answered 200 with JSON that is not an object; "
                "nothing was stored",
                org_id=org_id,
                status=200,
            ) from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]
        )
        raise InvalidPayloadError(
            f"org {org_id}: the response does not match the {what} schema "
            f"({problems}); nothing was stored",
            org_id=org_id,
            status=200,
        ) from None
