"""Fault descriptions for the local API simulator (:mod:`collector.sim`).

A :class:`Fault` says how to spoil the answer to a matching API request; a
:class:`FaultQueue` keeps them in FIFO order and hands out the first matching one.
Stdlib only; :func:`perform` carries a fault out through the simulator's request handler.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.sim.records import ENDPOINTS

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultQueue",
    "Responder",
    "fault_status",
    "patch_body",
    "perform",
]

FAULT_KINDS: frozenset[str] = frozenset(
    {"status", "slow", "reset", "truncate", "html", "empty", "nonjson", "body"}
)
_FAULT_ENDPOINTS: frozenset[str] = frozenset(ENDPOINTS) - {"unknown"}
_ORGLESS_ENDPOINTS: frozenset[str] = frozenset({"organizations", "self"})


@dataclass
class Fault:
    """One injected misbehaviour.

    kinds:
      - ``status``: answer ``status`` with an RFC 9457 problem body (``detail`` optional);
        ``retry_after`` is sent verbatim as the ``Retry-After`` header when set.
      - ``slow``: sleep ``delay`` seconds, then answer normally.
      - ``reset``: close the connection abruptly (TCP RST), no response.
      - ``truncate``: 200 with the real Content-Length but only half the body, then close.
      - ``html``: 200 ``text/html`` page.
      - ``empty``: 200 ``application/json`` with an empty body.
      - ``nonjson``: 200 ``application/json`` whose body is not JSON.
      - ``body``: 200 ``application/json`` with ``json.dumps(body)`` when ``body`` is not
        None, else the real body with ``patch`` merged in shallowly (a None value sets the
        key to null) and the ``remove`` keys deleted; for a list body (``metrics/dau``...)
        ``patch`` and ``remove`` apply to each item.

    ``count`` is how many matching requests it applies to (-1 = forever); ``org_id``
    restricts it to one organization, ``endpoint`` to one endpoint kind (``sessions``,
    ``prs``, ``searches``, ``active_users``, ``consumption``, ``organizations``, ``self``).
    A fault without ``endpoint`` applies to every endpoint of an org; the endpoints of no
    org (``organizations``, ``self``) only see the faults that name them.
    """

    kind: str
    count: int = 1
    org_id: str | None = None
    status: int = 500
    detail: str | None = None
    retry_after: str | None = None
    delay: float = 0.0
    body: Any = None
    patch: dict[str, Any] | None = None
    remove: tuple[str, ...] = field(default_factory=tuple)
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if self.count == 0 or self.count < -1:
            raise ValueError("count must be a positive integer or -1 (forever)")
        if self.kind == "status" and not 100 <= self.status <= 599:
            raise ValueError(f"status out of range: {self.status}")
        if self.endpoint is not None and self.endpoint not in _FAULT_ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {self.endpoint!r}; one of {sorted(_FAULT_ENDPOINTS)}"
            )
        self.remove = tuple(self.remove)

    def matches(self, org_id: str | None, endpoint: str | None = None) -> bool:
        """Whether the fault applies to a request of ``endpoint`` (kind) for ``org_id``
        (None: an endpoint of no org); ``endpoint=None`` checks the org only."""
        if endpoint is not None:
            if self.endpoint is not None and self.endpoint != endpoint:
                return False
            if endpoint in _ORGLESS_ENDPOINTS:
                return self.endpoint == endpoint and self.org_id is None
        return self.org_id is None or self.org_id == org_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "org_id": self.org_id,
            "status": self.status,
            "detail": self.detail,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "body": self.body,
            "patch": self.patch,
            "remove": list(self.remove),
            "endpoint": self.endpoint,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fault:
        known = {
            "kind", "count", "org_id", "status", "detail", "retry_after",
            "delay", "body", "patch", "remove", "endpoint",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in d:
            raise ValueError("fault needs a 'kind'")
        patch = d.get("patch")
        if patch is not None and not isinstance(patch, dict):
            raise ValueError("patch must be an object")
        retry_after = d.get("retry_after")
        return cls(
            kind=str(d["kind"]),
            count=int(d.get("count", 1)),
            org_id=d.get("org_id"),
            status=int(d.get("status", 500)),
            detail=d.get("detail"),
            retry_after=None if retry_after is None else str(retry_after),
            delay=float(d.get("delay", 0.0)),
            body=d.get("body"),
            patch=patch,
            remove=tuple(str(k) for k in d.get("remove") or ()),
            endpoint=None if d.get("endpoint") is None else str(d["endpoint"]),
        )


def patch_body(fault: Fault, real: Any) -> bytes:
    """The body a ``body`` fault sends instead of ``real`` (an object, or a list of objects
    patched one by one)."""
    if fault.body is not None:
        return json.dumps(fault.body).encode()

    def patched(item: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if fault.patch:
            out.update(fault.patch)
        for key in fault.remove:
            out.pop(key, None)
        return out

    if isinstance(real, list):
        return json.dumps([patched(item) for item in real]).encode()
    return json.dumps(patched(real)).encode()


class FaultQueue:
    """Thread-safe FIFO of faults; :meth:`take` consumes one use of the first match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, org_id: str | None, endpoint: str | None = None) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(org_id, endpoint):
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            del self._faults[i]
                    return fault
        return None


class Responder(Protocol):
    """The part of the simulator's request handler that :func:`perform` uses."""

    close_connection: bool
    connection: socket.socket

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str = ...,
        headers: Mapping[str, str] | None = ...,
        declared_length: int | None = ...,
    ) -> None: ...

    def problem(
        self, status: int, detail: str, headers: Mapping[str, str] | None = ...
    ) -> None: ...

    def abort(self) -> None: ...


def fault_status(fault: Fault) -> int:
    """The status recorded in the simulator's stats for a request answered by ``fault``."""
    if fault.kind == "status":
        return fault.status
    if fault.kind in ("reset", "truncate"):
        return 0
    return 200


_HTML = b"<!doctype html><html><body><h1>Gateway maintenance</h1></body></html>"


def perform(fault: Fault, out: Responder, real_body: Callable[[], Any]) -> None:
    """Answer the current request as ``fault`` says (``slow`` is handled by the caller)."""
    if fault.kind == "status":
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        out.problem(fault.status, fault.detail or f"injected {fault.status}", headers)
    elif fault.kind == "reset":
        out.abort()
    elif fault.kind == "html":
        out.send(200, _HTML, "text/html; charset=utf-8")
    elif fault.kind == "empty":
        out.send(200, b"")
    elif fault.kind == "nonjson":
        out.send(200, b"upstream error: this is not json")
    elif fault.kind == "truncate":
        raw = json.dumps(real_body()).encode()
        out.close_connection = True
        out.send(200, raw[: len(raw) // 2], declared_length=len(raw))
    elif fault.kind == "body":
        out.send(200, patch_body(fault, real_body()))
    else:
        out.send(200, json.dumps(real_body()).encode())


def abort_connection(conn: socket.socket) -> None:
    """SO_LINGER (1, 0) then close: the peer sees a TCP RST instead of a response."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()
