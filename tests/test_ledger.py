"""The ledger's rules: a failure never overwrites a newer success, settled windows are never
failing, and the planner orders a run as people need it. Both backends."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text

from collector.calendars import windows
from collector.client import DevinClient
from collector.outcomes import Collected, Failed
from collector.planner import Due, plan
from collector.store import Store
from collector.targets import Target
from collector.windows import Window, windows_between
from tests.helpers import T0, rows, ts

ALPHA = Target("org-alpha")
W = Window(T0 - 7200, T0 - 3600)
H = 3600


def ledger(engine: Engine) -> tuple[object, ...]:
    (row,) = rows(engine, "SELECT fetch_count, failure_count, last_error, next_due_at, settled"
                          " FROM collection_ledger")
    due = None if row["next_due_at"] is None else ts(row["next_due_at"])
    return (row["fetch_count"], row["failure_count"], row["last_error"], due,
            bool(row["settled"]))


def collected(make_client: Callable[..., DevinClient], *, at: float, settled: bool,
              next_due: int | None) -> Collected:
    fetched = make_client().fetch(ALPHA, W)
    fetched = type(fetched)(fetched.metrics, fetched.body, at, 1)
    return Collected(ALPHA, W, fetched, next_due, settled)


def test_a_failure_never_touches_a_settled_window(
    engine: Engine, make_client: Callable[..., DevinClient]
) -> None:
    store = Store(engine)
    store.save([collected(make_client, at=T0, settled=True, next_due=None)])
    # a failure that comes later (a daemon and a backfill on the same window)
    store.save([Failed(ALPHA, W, "the API failed with 503", T0 + 2, T0 + 2, 3)])
    assert ledger(engine) == (1, 0, None, None, True)


def test_a_failure_never_overwrites_a_newer_success(
    engine: Engine, make_client: Callable[..., DevinClient]
) -> None:
    store = Store(engine)
    store.save([collected(make_client, at=T0 + 10, settled=False, next_due=T0 + 3600)])
    store.save([Failed(ALPHA, W, "timed out", T0 + 5, T0 + 5, 3)])  # it failed before that
    assert ledger(engine) == (1, 0, None, T0 + 3600, False)
    # a failure after the last success is recorded, and the window is due again at once
    store.save([Failed(ALPHA, W, "timed out", T0 + 20, T0 + 20, 3)])
    assert ledger(engine) == (1, 1, "timed out", T0 + 20, False)
    # and a success after it clears it
    store.save([collected(make_client, at=T0 + 30, settled=False, next_due=T0 + 3600)])
    assert ledger(engine) == (2, 0, None, T0 + 3600, False)


def test_a_run_is_ordered_open_window_then_repolls_then_newest_gaps() -> None:
    now = T0 + 600
    horizon = 6 * H
    # re-polls: a window collected before, due for a while, and one just due
    repolls = [Due(Window(T0 - 3 * H, T0 - 2 * H), since=T0 - H),
               Due(Window(T0 - H, T0), since=T0)]
    # a failed window that never succeeded counts as a gap
    failed = Due(Window(T0 - 5 * H, T0 - 4 * H), since=T0 - 4 * H, repoll=False)
    known = {T0 - 3 * H, T0 - H, T0 - 5 * H, T0 - 2 * H}
    order = plan(now, windows(H), [*repolls, failed], known, horizon)
    assert order == [
        Window(T0, T0 + H),  # the open window
        Window(T0 - 3 * H, T0 - 2 * H), Window(T0 - H, T0),  # re-polls, most overdue first
        # gaps, newest first: never seen by the ledger, or only failed
        Window(T0 - 4 * H, T0 - 3 * H), Window(T0 - 5 * H, T0 - 4 * H),
        Window(T0 - 6 * H, T0 - 5 * H),
    ]
    assert len(order) == len(set(order))
    assert set(order) <= set(windows_between(now - horizon, T0 + H, H))


def test_processes_starting_together_agree_on_the_window_size(engine: Engine) -> None:
    """Daemons started at once on a new database all record the size; none fails."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from collector import db

    engines = [db.create_engine_for(str(engine.url.render_as_string(hide_password=False)))
               for _ in range(6)]
    barrier = Barrier(len(engines))

    def start(eng: Engine) -> None:
        barrier.wait()
        Store(eng).check_window_size(300)
        Store(eng).save_rates({"$DEVIN_API_TOKEN": 4.0}, at=T0)

    try:
        for _ in range(5):
            with ThreadPoolExecutor(len(engines)) as pool:
                list(pool.map(start, engines))  # re-raises any worker's error
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM collector_settings"))
    finally:
        for eng in engines:
            eng.dispose()
    Store(engine).check_window_size(300)
    assert rows(engine, "SELECT key, value FROM collector_settings") == [
        {"key": "window_seconds", "value": "300"}]
