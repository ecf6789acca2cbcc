"""Issue 12: the call store as the asyncio gateway uses it (one worker thread owns it).

Not ``pure``: :class:`AsyncCallStore` runs the SQLite work in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from softphone.gateway.call_store import AsyncCallStore, CallRecord, CallStore, CallStoreError

ALICE = "AC" + "a" * 32


def ringing(n: int, start: float = 1000.0) -> CallRecord:
    return CallRecord(
        sid=f"CA{n:032x}",
        account_sid=ALICE,
        from_="client:alice",
        to="client:bob",
        direction="outbound-api",
        status="ringing",
        start_time=start,
    )


async def test_queued_writes_run_in_order_before_later_reads_and_survive_a_reopen(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite3"
    db = await AsyncCallStore.open(path)
    assert db.recordings_dir == tmp_path.resolve() / "recordings"
    call = ringing(1)
    assert db.submit(CallStore.add_call, call, now=1000.0)
    db.submit(CallStore.update_call, call.sid, status="in-progress", now=1001.0)
    db.submit(CallStore.add_event, call.sid, "answered", now=1001.0, detail={"by": "bob"})
    db.submit(CallStore.update_call, call.sid, status="completed", now=1005.0)
    # no flush: the read is queued behind the writes in the same thread
    stored = await db.run(CallStore.get_call, ALICE, call.sid)
    assert stored is not None and (stored.status, stored.duration) == ("completed", 4.0)
    await db.close()
    await db.close()  # idempotent

    again = await AsyncCallStore.open(path)  # the gateway restarted
    try:
        assert await again.run(CallStore.get_call, ALICE, call.sid) == stored
        events = await again.run(CallStore.events, ALICE, call.sid)
        assert [(e.name, e.detail) for e in events] == [("answered", {"by": "bob"})]
    finally:
        await again.close()


async def test_the_store_lives_in_one_worker_thread_not_the_event_loops(tmp_path: Path) -> None:
    db = await AsyncCallStore.open(tmp_path / "calls.sqlite3")
    try:

        def thread_name(_store: CallStore) -> str:
            return threading.current_thread().name

        names = {await db.run(thread_name) for _ in range(5)}
        assert len(names) == 1 and names != {threading.current_thread().name}
        with pytest.raises(Exception, match="thread"):
            db.store.get_call(ALICE, "CA" + "0" * 32)  # sqlite3 refuses other threads
    finally:
        await db.close()


async def test_a_failed_write_is_logged_and_counted_never_raised_in_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = await AsyncCallStore.open(tmp_path / "calls.sqlite3")
    try:
        db.submit(CallStore.add_call, ringing(1), now=1000.0)
        db.submit(CallStore.add_call, ringing(1), now=1000.0)  # duplicate: ValueError
        with caplog.at_level(logging.ERROR, "softphone.gateway.call_store"):
            await db.flush()
        assert db.failed == 1
        assert "already stored" in caplog.text
    finally:
        await db.close()


async def test_writes_beyond_max_pending_are_dropped_and_counted(tmp_path: Path) -> None:
    db = await AsyncCallStore.open(tmp_path / "calls.sqlite3", max_pending=2)
    try:
        queued = [db.submit(CallStore.add_call, ringing(n), now=1000.0) for n in range(4)]
        assert queued == [True, True, False, False] and db.dropped == 2
        await db.flush()
        page = await db.run(CallStore.list_calls, ALICE)
        assert len(page.items) == 2
    finally:
        await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        db.submit(CallStore.add_call, ringing(9), now=1000.0)
    with pytest.raises(RuntimeError, match="closed"):
        await db.run(CallStore.list_calls, ALICE)


async def test_an_unusable_file_fails_open(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    path.write_bytes(b"not a database at all" * 200)
    with pytest.raises(CallStoreError):
        await AsyncCallStore.open(path)
