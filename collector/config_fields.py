"""The typed fields of the configuration, validated once at load: durations as whole seconds,
window sizes, environment-variable names that must not be tokens, loopback hosts. Pure."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from collector.windows import parse_duration, parse_window_size

ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keys that would hold a token in the file; tokens only ever come from the environment.
SECRET_KEYS = frozenset(
    {"token", "tokens", "api_key", "apikey", "api_token", "token_value", "access_token",
     "auth_token", "bearer", "bearer_token", "devin_api_token"}
)
#: How Devin's tokens begin: service-user tokens, then the legacy user and API keys.
TOKEN_PREFIXES = ("cog_", "apk_user_", "apk_")
#: Longest jitter derived from the interval when [schedule].jitter is not set.
MAX_DEFAULT_JITTER = 30


def seconds(value: object, *, allow_zero: bool = False) -> int:
    """A duration from the file ("90s", "15m", "6h", "7d", or a whole number of seconds)
    as whole seconds: parsed here, once, so nothing downstream reads duration text."""
    if isinstance(value, str):
        return parse_duration(value, allow_zero=allow_zero)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"{value} must be longer than zero")
        return value
    raise ValueError("write a duration like 30s, 15m, 6h or 7d")


def env_name(value: str) -> str:
    # Never put `value` in the message: it may well be a token pasted in the wrong place.
    if looks_like_token(value):
        raise ValueError(
            "this looks like a token, not the name of an environment variable: put the "
            "variable's NAME here (like DEVIN_API_TOKEN) and the token itself in that "
            "environment variable, never in this file"
        )
    if not ENV_NAME.match(value):
        raise ValueError(
            "the value is not an environment variable name (letters, digits and '_', not "
            "starting with a digit): put the variable's NAME here, like DEVIN_API_TOKEN"
        )
    return value


def looks_like_token(value: str) -> bool:
    """A Devin token (cog_..., or a legacy key apk_user_... or apk_...), or a long run of
    characters no one would name a variable: mixed-case letters, or digits without
    underscores (a hex or base64 secret). Such a value, or a key so named, is never printed."""
    if value.lower().startswith(TOKEN_PREFIXES):
        return True
    if len(value) <= 40:
        return False
    mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value)
    digits_run = any(c.isdigit() for c in value) and "_" not in value
    return mixed_case or digits_run or not ENV_NAME.match(value)


_SUBSECOND = re.compile(r"^\s*(\d*\.?\d*)\s*(ms|us|µs|ns|s|m|h|d)\s*$")


def _under_a_second(value: str) -> bool:
    """"0s", "500ms", "0.5s": a duration that is shorter than the one-second resolution."""
    match = _SUBSECOND.match(value)
    if match is None or match.group(1) in ("", "."):
        return False
    amount, unit = float(match.group(1)), match.group(2)
    return amount == 0 or unit in ("ms", "us", "µs", "ns") or (unit == "s" and amount < 1)


def default_jitter(interval: int) -> int:
    """The jitter used when none is set: a tenth of the interval, at most 30s, whole seconds."""
    return min(MAX_DEFAULT_JITTER, math.floor(interval / 10))


def interval(value: object) -> int:
    if isinstance(value, str) and _under_a_second(value):
        raise ValueError(
            "interval must be at least 1s, in whole seconds with a unit s, m, h or d, "
            "like 10s or 15m"
        )
    return seconds(value)


def window_size(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("write a window size like 1h")
    return parse_window_size(value)


#: Durations, in whole seconds once loaded.
Seconds = Annotated[int, BeforeValidator(seconds)]
SecondsOrZero = Annotated[int, BeforeValidator(lambda v: seconds(v, allow_zero=True))]
EnvName = Annotated[str, AfterValidator(env_name)]


def rate_limit(value: object) -> float | str:
    """``"auto"``, or a ceiling in requests per second above zero."""
    if value == "auto":
        return "auto"
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(
        'write "auto" (learned from the API\'s answers) or a number of requests per second '
        "above 0, like 20"
    )


#: A duration between runs: at least a second.
Interval = Annotated[int, BeforeValidator(interval)]
#: A window size that divides a day, in seconds.
WindowSize = Annotated[int, BeforeValidator(window_size)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
