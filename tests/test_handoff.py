"""The hand-offs between a collection run's threads: bounded, batched, and never losing an
item."""

from __future__ import annotations

import threading
import time

from collector.handoff import Feed, Outbox

#: How long a thread is given to show it is (still) blocked.
BLOCKED = 0.2


def started(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_feed_producer_sleeps_until_the_consumers_take_it_down_to_low() -> None:
    feed: Feed[int] = Feed(high=4, low=2)
    for i in range(4):
        assert feed.put(i)
    putter = started(lambda: feed.put(4))
    putter.join(BLOCKED)
    assert putter.is_alive()  # full: the producer waits
    assert feed.get() == 0
    putter.join(BLOCKED)
    assert putter.is_alive()  # three left, more than low: still waiting
    assert feed.get() == 1
    putter.join(5)
    assert not putter.is_alive()  # down to low: it goes on
    feed.end()
    assert [feed.get() for _ in range(4)] == [2, 3, 4, None]
    assert feed.get() is None  # every consumer sees the end


def test_feed_close_releases_a_waiting_producer_and_refuses_more() -> None:
    feed: Feed[int] = Feed(high=1)
    assert feed.put(0)
    result: list[bool] = []
    putter = started(lambda: result.append(feed.put(1)))
    putter.join(BLOCKED)
    assert putter.is_alive()
    feed.close()
    putter.join(5)
    assert result == [False]
    assert not feed.put(2)


def test_feed_consumers_wait_for_items_and_see_the_end() -> None:
    feed: Feed[int] = Feed(high=8)
    got: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while (item := feed.get()) is not None:
            with lock:
                got.append(item)

    consumers = [started(consume) for _ in range(3)]
    for i in range(100):
        assert feed.put(i)
    feed.end()
    for consumer in consumers:
        consumer.join(5)
        assert not consumer.is_alive()
    assert sorted(got) == list(range(100))


def test_outbox_wakes_the_consumer_for_a_batch_not_for_each_item() -> None:
    box: Outbox[int] = Outbox(workers=2, capacity=100)
    taken: list[tuple[list[int], bool]] = []
    taker = started(lambda: taken.append(box.take(3, timeout=None)))
    box.put([1])
    box.put([2])
    taker.join(BLOCKED)
    assert taker.is_alive()  # two of three: still asleep
    box.put([3, 4])
    taker.join(5)
    assert taken == [([1, 2, 3], True)]  # a batch at most: the rest waits for the next
    box.done()
    box.done()
    assert box.take(3, timeout=None) == ([4], False)


def test_outbox_take_returns_what_there_is_after_the_timeout() -> None:
    box: Outbox[int] = Outbox(workers=1, capacity=100)
    box.put([7])
    began = time.monotonic()
    assert box.take(50, timeout=0.05) == ([7], True)
    assert time.monotonic() - began >= 0.05
    assert box.take(50, timeout=0.0) == ([], True)


def test_outbox_take_returns_at_once_when_every_producer_is_done() -> None:
    box: Outbox[int] = Outbox(workers=2, capacity=100)
    taken: list[tuple[list[int], bool]] = []
    taker = started(lambda: taken.append(box.take(50, timeout=None)))
    box.put([1])
    box.done()
    taker.join(BLOCKED)
    assert taker.is_alive()  # one producer still runs
    box.done()
    taker.join(5)
    assert taken == [([1], False)]
    assert box.take(50, timeout=None) == ([], False)


def test_outbox_holds_producers_back_while_full() -> None:
    box: Outbox[int] = Outbox(workers=1, capacity=2)
    box.put([1, 2])
    putter = started(lambda: box.put([3]))
    putter.join(BLOCKED)
    assert putter.is_alive()  # a slow writer holds the fetching back
    assert box.take(2, timeout=None) == ([1, 2], True)
    putter.join(5)
    assert not putter.is_alive()
    assert box.take(2, timeout=0.0) == ([3], True)


def test_outbox_hands_over_what_is_left_in_batches_after_the_producers_are_done() -> None:
    box: Outbox[int] = Outbox(workers=1, capacity=100)
    box.put(list(range(7)))
    box.done()
    assert box.take(3, timeout=None) == ([0, 1, 2], True)  # more is left
    assert box.take(3, timeout=None) == ([3, 4, 5], True)
    assert box.take(3, timeout=None) == ([6], False)
