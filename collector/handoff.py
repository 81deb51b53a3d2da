"""How the threads of one collection run hand work to each other, waking each other as
seldom as they can.

A `Feed` carries pairs from the plan's thread to the fetching workers; an `Outbox` carries
outcomes from the workers to the thread that writes them. The single thread on one side of
each (the plan's, the writer) is woken per batch, not per item: a thread woken costs a
context switch and a turn at the GIL, which at hundreds of windows a second is a measurable
share of the run's CPU.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Feed(Generic[T]):
    """A bounded hand-off from one producer to many consumers.

    The producer fills up to `high` items, then sleeps until the consumers have taken it
    down to `low`: woken once per `high - low` items, not once per item."""

    def __init__(self, high: int, low: int | None = None) -> None:
        self._items: deque[T] = deque()
        self._high = max(1, high)
        self._low = max(0, min(self._high - 1, high // 2 if low is None else low))
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._producer_waits = False
        self._ended = False  # the producer has no more
        self._closed = False  # the consumers want no more

    def put(self, item: T) -> bool:
        """Add `item`, waiting for room; False (the item dropped) once `close` was called."""
        with self._lock:
            if len(self._items) >= self._high:
                self._producer_waits = True
                while len(self._items) > self._low and not self._closed:
                    self._has_room.wait()
                self._producer_waits = False
            if self._closed:
                return False
            self._items.append(item)
            self._has_items.notify()
            return True

    def get(self) -> T | None:
        """The next item, waiting for one; None once the producer has ended and all is
        taken."""
        with self._lock:
            while not self._items:
                if self._ended:
                    return None
                self._has_items.wait()
            item = self._items.popleft()
            if self._producer_waits and len(self._items) <= self._low:
                self._has_room.notify()
            return item

    def end(self) -> None:
        """The producer has no more: consumers get None once the rest is taken."""
        with self._lock:
            self._ended = True
            self._has_items.notify_all()

    def close(self) -> None:
        """The consumers want no more: `put` returns False from now on."""
        with self._lock:
            self._closed = True
            self._has_room.notify_all()


class Outbox(Generic[T]):
    """A bounded hand-off from many producers (`workers` of them) to one consumer, which
    takes items in batches.

    The consumer is woken when a batch is ready or when the last producer is done, and
    otherwise sleeps for as long as it asks: not once per item."""

    def __init__(self, workers: int, capacity: int) -> None:
        self._items: list[T] = []
        self._running = workers
        self._capacity = max(1, capacity)
        self._batch = self._capacity
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._consumer_waits = False

    def put(self, items: Sequence[T]) -> None:
        """Add a producer's `items`, waiting while the box is full."""
        with self._lock:
            while len(self._items) >= self._capacity:
                self._has_room.wait()
            self._items.extend(items)
            if self._consumer_waits and len(self._items) >= self._batch:
                self._ready.notify()

    def done(self) -> None:
        """One producer has no more."""
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._ready.notify()

    def take(self, batch: int, timeout: float | None) -> tuple[list[T], bool]:
        """Up to `batch` items (the oldest), once the box holds that many, `timeout` seconds
        have passed, or no producer runs any more; and whether more may come (a producer
        still runs, or items are left)."""
        batch = max(1, batch)
        with self._lock:
            self._batch = batch
            if len(self._items) < batch and self._running:
                until = None if timeout is None else time.monotonic() + timeout
                self._consumer_waits = True
                while len(self._items) < batch and self._running:
                    left = None if until is None else until - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._ready.wait(left)
                self._consumer_waits = False
            items, self._items = self._items[:batch], self._items[batch:]
            self._has_room.notify_all()
            return items, self._running > 0 or bool(self._items)
