"""Call store: what each SQLite operation costs the gateway, with 10k calls stored.

Fills a :class:`~softphone.gateway.call_store.CallStore` in a temporary folder with
``--calls`` ended calls (two accounts, 3 events each) and times, per operation:
adding a call (a committed transaction, retention checked), an update, an event, a
fetch, a page of 50 (unfiltered, filtered by status and by ``from``, and the last
page by token), a prune of the calls over a lowered bound, adding a call at the bound
(each add deletes the oldest), and, through
:class:`~softphone.gateway.call_store.AsyncCallStore`, what ``submit`` costs the event
loop and an awaited ``run`` round trip.

``python -m benchmarks.call_store [--calls N]``; :func:`run` (a coroutine) returns the
report lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from softphone.gateway.call_store import (
    AsyncCallStore,
    CallFilter,
    CallRecord,
    CallStore,
    Retention,
)

ACCOUNTS = ("AC" + "a" * 32, "AC" + "b" * 32)


def _sid(n: int) -> str:
    return f"CA{n:032x}"


def _call(n: int, start: float) -> CallRecord:
    return CallRecord(
        sid=_sid(n),
        account_sid=ACCOUNTS[n % 2],
        from_=f"client:user{n % 50}",
        to="client:bob",
        direction="outbound-api",
        status="completed" if n % 5 else "no-answer",
        start_time=start,
        answer_time=start + 1 if n % 5 else None,
        end_time=start + 30,
        duration=29.0 if n % 5 else None,
        end_reason="hangup by caller",
    )


def _time_each(count: int, op: Callable[[int], object]) -> list[float]:
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - t0)
    return times


def _row(name: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return (
        f"{name:34} {statistics.median(times) * 1e6:9.0f} {p99 * 1e6:9.0f} "
        f"{max(times) * 1e6:9.0f}  (n={len(times)})"
    )


def _fill(store: CallStore, calls: int) -> float:
    """Store ``calls`` ended calls with 3 events each; seconds it took."""
    t0 = time.perf_counter()
    for n in range(calls):
        store.add_call(_call(n, 1000.0 + n), now=1000.0 + n + 30)
        for name in ("ringing", "answered", "ended"):
            store.add_event(_sid(n), name, now=1000.0 + n, detail={"n": n})
    return time.perf_counter() - t0


async def _async_costs(path: Path, base: int) -> list[str]:
    db = await AsyncCallStore.open(path, retention=Retention(max_calls=10**9))
    try:
        submit = []
        for i in range(500):
            t0 = time.perf_counter()
            db.submit(CallStore.add_event, _sid(i), "note", now=5e6, detail={"i": i})
            submit.append(time.perf_counter() - t0)
        await db.flush()
        round_trip = []
        for i in range(200):
            t0 = time.perf_counter()
            await db.run(CallStore.get_call, ACCOUNTS[(base + i) % 2], _sid(base + i))
            round_trip.append(time.perf_counter() - t0)
    finally:
        await db.close()
    return [
        _row("async submit (loop side)", submit),
        _row("async run(get_call) round trip", round_trip),
    ]


async def run(calls: int = 10_000) -> list[str]:
    """Fill a store with ``calls`` calls and time each operation; the report lines."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calls.sqlite3"
        with CallStore(path, retention=Retention(max_calls=10**9)) as store:
            fill_s = _fill(store, calls)
            base = calls
            rows = [
                _row(
                    "add_call (ended, committed)",
                    _time_each(
                        500, lambda i: store.add_call(_call(base + i, 9e5 + i), now=9e5 + i + 30)
                    ),
                ),
            ]
            live = base + 1000
            for i in range(500):
                store.add_call(
                    attrs_live(_call(live + i, 9.5e5 + i)),
                    now=9.5e5 + i,
                )
            rows.append(
                _row(
                    "update_call (ringing->in-progress)",
                    _time_each(
                        500,
                        lambda i: store.update_call(
                            _sid(live + i), status="in-progress", now=9.6e5 + i
                        ),
                    ),
                )
            )
            rows.append(
                _row(
                    "add_event",
                    _time_each(
                        500, lambda i: store.add_event(_sid(i), "dtmf", now=9.7e5, detail={"d": 1})
                    ),
                )
            )
            rows.append(
                _row(
                    "get_call",
                    _time_each(500, lambda i: store.get_call(ACCOUNTS[i % 2], _sid(i * 7))),
                )
            )
            rows.append(_row("owner_of", _time_each(500, lambda i: store.owner_of(_sid(i * 7)))))
            account = ACCOUNTS[0]
            rows.append(
                _row("list_calls page 50", _time_each(200, lambda i: store.list_calls(account)))
            )
            completed = CallFilter(status="completed")
            rows.append(
                _row(
                    "list_calls page 50, status=",
                    _time_each(200, lambda i: store.list_calls(account, completed)),
                )
            )
            by_from = CallFilter(from_="client:user10")
            rows.append(
                _row(
                    "list_calls page 50, from=",
                    _time_each(200, lambda i: store.list_calls(account, by_from)),
                )
            )
            token = _last_token(store, account)
            rows.append(
                _row(
                    "list_calls last page by token",
                    _time_each(200, lambda i: store.list_calls(account, page_token=token)),
                )
            )
            store.retention = Retention(max_calls=calls)
            t0 = time.perf_counter()
            pruned = store.prune(now=9.7e5)
            prune_s = time.perf_counter() - t0
            top = base + 5000
            rows.append(
                _row(
                    "add_call at the bound (prunes one)",
                    _time_each(
                        500, lambda i: store.add_call(_call(top + i, 9.8e5 + i), now=9.8e5 + i + 30)
                    ),
                )
            )
        size = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
        rows += await _async_costs(path, base)
    header = f"{'operation':34} {'median':>9} {'p99':>9} {'max':>9}   (microseconds)"
    return [
        f"Call store, SQLite {calls} calls x 3 events: fill {fill_s:.2f} s "
        f"({fill_s / calls / 4 * 1e6:.0f} us per write), file {size / 1e6:.1f} MB",
        header,
        "-" * len(header),
        *rows,
        f"one prune of {pruned.calls} calls over the bound: {prune_s * 1000:.1f} ms",
    ]


def attrs_live(call: CallRecord) -> CallRecord:
    """``call`` still ringing (no end, no answer)."""
    return attrs.evolve(
        call, status="ringing", answer_time=None, end_time=None, duration=None, end_reason=None
    )


def _last_token(store: CallStore, account: str) -> str | None:
    token = None
    page = store.list_calls(account, page_size=1000)
    while page.next_page_token is not None:
        token = page.next_page_token
        page = store.list_calls(account, page_size=1000, page_token=token)
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    for line in asyncio.run(run(args.calls)):
        print(line)


if __name__ == "__main__":
    main()
