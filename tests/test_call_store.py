"""Issue 12, the durable call store: SQLite calls, events, recordings and insights.

Every test works on a real SQLite file in ``tmp_path``; "survives a restart" is
closing the store and opening the same file again, as a restarted gateway does.
"""

from __future__ import annotations

import math
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest

from softphone.gateway.call_store import (
    SCHEMA_VERSION,
    CallFilter,
    CallRecord,
    CallStore,
    CallStoreError,
    InsightItem,
    Recording,
    Retention,
    default_db_path,
)

pytestmark = pytest.mark.pure

ALICE = "AC" + "a" * 32
BOB = "AC" + "b" * 32
APP = "AP" + "1" * 32
DAY = 86400.0


def sid(n: int, prefix: str = "CA") -> str:
    return f"{prefix}{n:032x}"


def live(n: int, start: float = 1000.0, account: str = ALICE, **kwargs: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "sid": sid(n),
        "account_sid": account,
        "from_": "client:alice",
        "to": "client:bob",
        "direction": "outbound-api",
        "status": "ringing",
        "start_time": start,
        "application_sid": APP,
    }
    fields.update(kwargs)
    return CallRecord(**fields)


def ended(n: int, start: float, end: float, account: str = ALICE, **kwargs: Any) -> CallRecord:
    return live(
        n,
        start,
        account,
        status="completed",
        answer_time=start,
        end_time=end,
        duration=end - start,
        end_reason="hangup by caller",
        **kwargs,
    )


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        value: int = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return value


def event_item(n: int, at: float = 1000.0, kind: str = "event") -> InsightItem:
    return InsightItem(kind=kind, identity="alice", received_at=at, data=f'{{"n":{n}}}')


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "calls.sqlite3"


@pytest.fixture
def store(db_path: Path) -> CallStore:
    return CallStore(db_path)


# -- the file --------------------------------------------------------------------------------
def test_a_new_store_has_the_current_schema_in_wal_mode_readable_by_its_owner_only(
    db_path: Path,
) -> None:
    with CallStore(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
    with sqlite3.connect(db_path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"calls", "call_events", "recordings", "insights", "insight_aliases"} <= tables
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_default_path_follows_softphone_home_then_xdg_state_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_db_path({}, home) == home / ".local/state/softphone/calls.sqlite3"
    assert default_db_path({"XDG_STATE_HOME": "/var/state"}, home) == Path(
        "/var/state/softphone/calls.sqlite3"
    )
    # a relative XDG_STATE_HOME is invalid per the XDG spec: ignored
    assert default_db_path({"XDG_STATE_HOME": "rel"}, home) == default_db_path({}, home)
    env = {"SOFTPHONE_HOME": "/srv/sp", "XDG_STATE_HOME": "/var/state"}
    assert default_db_path(env, home) == Path("/srv/sp/calls.sqlite3")


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    path.write_bytes(b"this is not SQLite, just some text" * 100)
    with pytest.raises(CallStoreError, match="cannot use"):
        CallStore(path)


def test_a_store_written_by_a_newer_schema_is_refused(db_path: Path) -> None:
    CallStore(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CallStoreError, match="newer"):
        CallStore(db_path)


V1_SCHEMA = (
    """CREATE TABLE calls (sid TEXT PRIMARY KEY, account_sid TEXT NOT NULL,
    parent_call_sid TEXT, from_addr TEXT NOT NULL, to_addr TEXT NOT NULL,
    direction TEXT NOT NULL, status TEXT NOT NULL, start_time REAL NOT NULL,
    answer_time REAL, end_time REAL, duration REAL, end_reason TEXT, application_sid TEXT)""",
    "CREATE INDEX calls_by_account ON calls (account_sid, start_time, sid)",
    "CREATE INDEX calls_by_end ON calls (end_time) WHERE end_time IS NOT NULL",
    """CREATE TABLE call_events (id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL REFERENCES calls (sid) ON DELETE CASCADE,
    time REAL NOT NULL, name TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX call_events_by_call ON call_events (call_sid, id)",
    """CREATE TABLE recordings (sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL REFERENCES calls (sid) ON DELETE CASCADE,
    account_sid TEXT NOT NULL, path TEXT NOT NULL, duration REAL NOT NULL,
    created REAL NOT NULL)""",
    "CREATE INDEX recordings_by_call ON recordings (call_sid)",
    "CREATE INDEX recordings_by_account ON recordings (account_sid, created, sid)",
)
"""Schema 1 as released (frozen here: the migration must keep working on such files)."""


def test_a_version_1_file_is_migrated_keeping_its_calls_and_gains_insights(
    db_path: Path,
) -> None:
    db_path.parent.mkdir()
    with sqlite3.connect(db_path) as db:
        for statement in V1_SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT INTO calls (sid, account_sid, from_addr, to_addr, direction, status, "
            "start_time, end_time, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid(1), ALICE, "client:a", "client:b", "inbound", "failed", 5.0, 6.0, "old"),
        )
        db.execute(
            "INSERT INTO call_events (call_sid, time, name, detail) VALUES (?, 5, 'ringing', '{}')",
            (sid(1),),
        )
        db.execute("PRAGMA user_version = 1")
    with CallStore(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        call = store.get_call(ALICE, sid(1))
        assert call is not None and call.status == "failed" and call.end_reason == "old"
        assert [e.name for e in store.events(ALICE, sid(1))] == ["ringing"]
        store.add_insights(ALICE, sid(1), [event_item(1)], now=7)
        assert [i.data for i in store.load_insights(ALICE, sid(1))] == ['{"n":1}']


# -- calls -----------------------------------------------------------------------------------
def test_a_call_goes_from_ringing_to_answered_to_completed(store: CallStore) -> None:
    store.add_call(live(1, start=100.0, parent_call_sid=sid(9)), now=100.0)
    answered = store.update_call(sid(1), status="in-progress", now=103.0)
    assert answered is not None
    assert (answered.status, answered.answer_time, answered.end_time) == ("in-progress", 103, None)
    done = store.update_call(sid(1), status="completed", now=110.5, end_reason="hangup by callee")
    assert done == attrs.evolve(
        answered, status="completed", end_time=110.5, duration=7.5, end_reason="hangup by callee"
    )
    assert done.parent_call_sid == sid(9) and done.application_sid == APP
    assert store.get_call(ALICE, sid(1)) == done


def test_an_unanswered_call_has_no_duration_and_an_ended_call_never_changes(
    store: CallStore,
) -> None:
    store.add_call(live(1, start=100.0), now=100.0)
    missed = store.update_call(sid(1), status="no-answer", now=160.0, end_reason="ring timeout")
    assert missed is not None
    assert (missed.end_time, missed.duration, missed.answer_time) == (160.0, None, None)
    assert store.update_call(sid(1), status="completed", now=170.0) is None
    assert store.get_call(ALICE, sid(1)) == missed
    assert store.update_call(sid(2), status="completed", now=170.0) is None  # unknown


def test_an_answered_call_cannot_ring_again(store: CallStore) -> None:
    store.add_call(live(1), now=1000.0)
    store.update_call(sid(1), status="in-progress", now=1001.0)
    with pytest.raises(ValueError, match="answered"):
        store.update_call(sid(1), status="ringing", now=1002.0)
    with pytest.raises(ValueError, match="status"):
        store.update_call(sid(1), status="talking", now=1002.0)
    call = store.get_call(ALICE, sid(1))
    assert call is not None and call.status == "in-progress"


def test_the_same_callsid_cannot_be_stored_twice(store: CallStore) -> None:
    store.add_call(live(1), now=1000.0)
    with pytest.raises(ValueError, match="already stored"):
        store.add_call(live(1, account=BOB), now=1000.0)
    assert store.get_call(BOB, sid(1)) is None


def test_calls_are_listed_newest_first_with_filters(store: CallStore) -> None:
    store.add_call(ended(1, 100.0, 130.0, from_="client:carol"), now=130.0)
    store.add_call(live(2, start=200.0, to="echo"), now=200.0)
    store.add_call(ended(3, 300.0, 330.0, parent_call_sid=sid(1)), now=330.0)
    store.add_call(live(4, start=400.0, status="queued"), now=400.0)
    store.add_call(ended(5, 250.0, 260.0, account=BOB), now=260.0)

    def sids(f: CallFilter | None = None) -> list[str]:
        return [c.sid for c in store.list_calls(ALICE, f).items]

    assert sids() == [sid(4), sid(3), sid(2), sid(1)]
    assert sids(CallFilter(status="completed")) == [sid(3), sid(1)]
    assert sids(CallFilter(from_="client:carol")) == [sid(1)]
    assert sids(CallFilter(to="echo")) == [sid(2)]
    assert sids(CallFilter(parent_call_sid=sid(1))) == [sid(3)]
    assert sids(CallFilter(start_after=200.0, start_before=400.0)) == [sid(3), sid(2)]
    assert sids(CallFilter(status="busy")) == []
    assert store.account_sids() == [ALICE, BOB]


def test_filters_are_values_not_sql(store: CallStore) -> None:
    sneaky = "client:x' OR '1'='1"
    store.add_call(live(1, from_=sneaky), now=1000.0)
    store.add_call(live(2), now=1000.0)
    assert [c.sid for c in store.list_calls(ALICE, CallFilter(from_=sneaky)).items] == [sid(1)]
    assert store.list_calls(ALICE, CallFilter(to="x' OR 1=1 --")).items == ()


def test_paging_visits_every_call_once_even_with_equal_start_times(store: CallStore) -> None:
    for n in range(23):
        store.add_call(live(n, start=1000.0 + n // 4), now=1000.0)  # groups of equal starts
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = store.list_calls(ALICE, page_size=5, page_token=token)
        seen += [c.sid for c in page.items]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 5 and len(seen) == 23 and set(seen) == {sid(n) for n in range(23)}
    expected = sorted(((1000.0 + n // 4, sid(n)) for n in range(23)), reverse=True)
    assert seen == [s for _, s in expected]


def test_a_last_full_page_has_no_next_token(store: CallStore) -> None:
    for n in range(4):
        store.add_call(live(n, start=1000.0 + n), now=1000.0)
    first = store.list_calls(ALICE, page_size=2)
    assert first.next_page_token is not None
    second = store.list_calls(ALICE, page_size=2, page_token=first.next_page_token)
    assert len(second.items) == 2 and second.next_page_token is None


@pytest.mark.parametrize(
    "token", ["", "%%%", "bm90IGpzb24", "WyJyZWNvcmRpbmdzIiwxLCJDQSJd", "WzEsMiwzXQ", "bnVsbA"]
)
def test_page_tokens_the_store_did_not_make_are_refused(store: CallStore, token: str) -> None:
    # "bm90IGpzb24" = "not json"; the next is a recordings token; then [1,2,3]; then null
    with pytest.raises(ValueError, match="page token"):
        store.list_calls(ALICE, page_token=token)


@pytest.mark.parametrize("page_size", [0, -1, 1001, True, 2.5])
def test_page_sizes_are_bounded(store: CallStore, page_size: Any) -> None:
    with pytest.raises(ValueError, match="page_size"):
        store.list_calls(ALICE, page_size=page_size)


# -- account isolation -----------------------------------------------------------------------
def test_an_account_never_reads_another_accounts_data(store: CallStore) -> None:
    folder = store.recordings_dir
    folder.mkdir(parents=True)
    store.add_call(live(1, account=BOB), now=1000.0)
    store.add_event(sid(1), "ringing", now=1000.0, detail={"secret": "bob's"})
    store.add_recording(
        Recording(
            sid=sid(1, "RE"),
            call_sid=sid(1),
            account_sid=BOB,
            path=folder / "r1.wav",
            duration=3.0,
            created=1001.0,
        )
    )
    store.add_insights(BOB, sid(1), [event_item(1)], now=1001.0)
    assert store.get_call(ALICE, sid(1)) is None
    assert store.list_calls(ALICE).items == ()
    assert store.events(ALICE, sid(1)) == []
    assert store.get_recording(ALICE, sid(1, "RE")) is None
    assert store.list_recordings(ALICE).items == ()
    assert store.list_recordings(ALICE, call_sid=sid(1)).items == ()
    assert store.load_insights(ALICE, sid(1)) == []
    # ... while the owner reads everything
    assert store.get_call(BOB, sid(1)) is not None
    assert [e.detail for e in store.events(BOB, sid(1))] == [{"secret": "bob's"}]
    assert store.get_recording(BOB, sid(1, "RE")) is not None
    assert len(store.load_insights(BOB, sid(1))) == 1
    assert store.owner_of(sid(1)) == BOB


def test_a_recording_must_belong_to_its_calls_account(store: CallStore) -> None:
    store.add_call(live(1, account=BOB), now=1000.0)
    with pytest.raises(ValueError, match="no call"):
        store.add_recording(
            Recording(
                sid=sid(1, "RE"),
                call_sid=sid(1),
                account_sid=ALICE,
                path=store.recordings_dir / "r.wav",
                duration=1.0,
                created=1000.0,
            )
        )
    assert store.list_recordings(BOB).items == ()


# -- events and recordings -------------------------------------------------------------------
def test_events_are_kept_in_order_and_bounded_per_call(db_path: Path) -> None:
    with CallStore(db_path, retention=Retention(max_events_per_call=3)) as store:
        store.add_call(live(1), now=1000.0)
        kept = [store.add_event(sid(1), f"e{i}", now=1000.0 + i, detail={"i": i}) for i in range(5)]
        assert kept == [True, True, True, False, False]
        events = store.events(ALICE, sid(1))
        assert [(e.time, e.name, e.detail) for e in events] == [
            (1000.0, "e0", {"i": 0}),
            (1001.0, "e1", {"i": 1}),
            (1002.0, "e2", {"i": 2}),
        ]
        assert store.add_event(sid(2), "ringing", now=1000.0) is False  # no such call


def test_recordings_list_newest_first_and_page(store: CallStore) -> None:
    store.add_call(live(1), now=1000.0)
    store.add_call(live(2), now=1000.0)
    for n in range(5):
        store.add_recording(
            Recording(
                sid=sid(n, "RE"),
                call_sid=sid(1 + n % 2),
                account_sid=ALICE,
                path=store.recordings_dir / f"{n}.wav",
                duration=float(n),
                created=2000.0 + n,
            )
        )
    first = store.list_recordings(ALICE, page_size=3)
    assert [r.sid for r in first.items] == [sid(4, "RE"), sid(3, "RE"), sid(2, "RE")]
    rest = store.list_recordings(ALICE, page_size=3, page_token=first.next_page_token)
    assert [r.sid for r in rest.items] == [sid(1, "RE"), sid(0, "RE")]
    assert rest.next_page_token is None
    by_call = store.list_recordings(ALICE, call_sid=sid(2))
    assert [r.sid for r in by_call.items] == [sid(3, "RE"), sid(1, "RE")]
    assert by_call.items[0].path == store.recordings_dir / "3.wav"
    with pytest.raises(ValueError, match="page token"):
        store.list_calls(ALICE, page_token=first.next_page_token)


def test_a_recording_file_outside_the_recordings_folder_is_refused(
    store: CallStore, tmp_path: Path
) -> None:
    store.add_call(live(1), now=1000.0)
    for path in (tmp_path / "elsewhere.wav", store.recordings_dir / ".." / "up.wav"):
        with pytest.raises(ValueError, match="not under"):
            store.add_recording(
                Recording(
                    sid=sid(1, "RE"),
                    call_sid=sid(1),
                    account_sid=ALICE,
                    path=path,
                    duration=1.0,
                    created=1000.0,
                )
            )


# -- insights --------------------------------------------------------------------------------
def test_insights_under_a_temporary_id_join_the_callsid(store: CallStore) -> None:
    temp = "TJSaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    store.add_call(live(1), now=1000.0)
    store.add_insights(ALICE, temp, [event_item(1, 1000.0)], now=1000.0)
    assert store.owner_of(temp) == ALICE
    store.add_insights(BOB, temp, [event_item(99, 1000.5)], now=1000.5)  # not alice's: stays
    assert store.rekey_insights(ALICE, temp, sid(1), now=1001.0) == 1
    store.add_insights(
        ALICE,
        sid(1),
        [event_item(2, 1002.0, "metric"), event_item(3, 1003.0, "feedback")],
        now=1003.0,
    )
    items = store.load_insights(ALICE, sid(1))
    assert [(i.kind, i.data) for i in items] == [
        ("event", '{"n":1}'),
        ("metric", '{"n":2}'),
        ("feedback", '{"n":3}'),
    ]
    assert store.load_insights(ALICE, temp) == items  # the alias reads the CallSid's items
    assert store.temp_sids(ALICE, sid(1)) == [temp]
    assert [i.data for i in store.load_insights(BOB, temp)] == ['{"n":99}']


def test_insights_items_are_bounded_overall_oldest_first(db_path: Path) -> None:
    with CallStore(db_path, retention=Retention(max_insight_items=3)) as store:
        store.add_call(live(1), now=1000.0)
        result = store.add_insights(
            ALICE, sid(1), [event_item(n, 1000.0 + n) for n in range(5)], now=1005.0
        )
        assert result.insight_items == 2
        assert [i.data for i in store.load_insights(ALICE, sid(1))] == [
            '{"n":2}',
            '{"n":3}',
            '{"n":4}',
        ]


# -- retention -------------------------------------------------------------------------------
def _with_recording(store: CallStore, n: int, call: CallRecord) -> Path:
    """Store ``call`` (as of its end) with an event, a recording file and an insights item."""
    store.add_call(call, now=call.end_time or call.start_time)
    store.add_event(call.sid, "ringing", now=call.start_time)
    store.recordings_dir.mkdir(parents=True, exist_ok=True)
    audio = store.recordings_dir / f"{call.sid}.wav"
    audio.write_bytes(b"RIFF....WAVE")
    store.add_recording(
        Recording(
            sid=sid(n, "RE"),
            call_sid=call.sid,
            account_sid=call.account_sid,
            path=audio,
            duration=1.0,
            created=call.start_time,
        )
    )
    store.add_insights(call.account_sid, call.sid, [event_item(n)], now=call.start_time)
    return audio


def test_beyond_max_calls_the_call_that_ended_first_goes_with_everything_it_had(
    db_path: Path,
) -> None:
    with CallStore(db_path, retention=Retention(max_calls=3)) as store:
        # started in order 1, 2, 3 but call 2 ended first
        files = {
            1: _with_recording(store, 1, ended(1, 100.0, 500.0)),
            2: _with_recording(store, 2, ended(2, 200.0, 250.0)),
            3: _with_recording(store, 3, ended(3, 300.0, 600.0)),
        }
        store.add_call(live(4, start=700.0), now=700.0)  # one too many
        assert store.get_call(ALICE, sid(2)) is None
        assert not files[2].exists() and files[1].exists() and files[3].exists()
        assert {c.sid for c in store.list_calls(ALICE).items} == {sid(1), sid(3), sid(4)}
        assert store.get_recording(ALICE, sid(2, "RE")) is None
        assert store.load_insights(ALICE, sid(2)) == []
        # live calls are never pruned: two more live calls push out ended ones only
        store.add_call(live(5, start=800.0), now=800.0)
        result = store.add_call(live(6, start=900.0), now=900.0)
        assert result.calls == 1 and result.recording_files == 1
        assert {c.sid for c in store.list_calls(ALICE).items} == {sid(4), sid(5), sid(6)}
        store.add_call(live(7, start=950.0), now=950.0)  # only live calls left: all kept
        assert len(store.list_calls(ALICE).items) == 4
    assert count(db_path, "call_events") == 0
    assert count(db_path, "recordings") == 0
    assert count(db_path, "insights") == 0
    assert not any(files[n].exists() for n in files)


def test_calls_older_than_max_age_are_deleted_on_insert_and_by_prune(db_path: Path) -> None:
    with CallStore(db_path, retention=Retention(max_age_s=DAY)) as store:
        old = _with_recording(store, 1, ended(1, 0.0, 100.0))
        young = _with_recording(store, 2, ended(2, 50.0, 50_000.0))
        store.add_insights(ALICE, "TJSorphan", [event_item(7, 10.0)], now=10.0)
        store.add_call(live(3, start=100.0), now=100.0)  # a live call, however old
        result = store.add_call(live(4, start=DAY + 101.0), now=DAY + 101.0)
        assert (result.calls, result.recording_files) == (1, 1)
        assert result.insight_items == 2  # call 1's item and the orphan temporary id's
        assert not old.exists() and young.exists()
        assert store.get_call(ALICE, sid(1)) is None
        assert store.load_insights(ALICE, "TJSorphan") == []
        assert store.prune(now=DAY + 1000.0).calls == 0
        pruned = store.prune(now=DAY + 50_001.0)
        assert (pruned.calls, pruned.recording_files, pruned.insight_items) == (1, 1, 1)
        assert not young.exists()
        assert {c.sid for c in store.list_calls(ALICE).items} == {sid(3), sid(4)}


def test_prune_counts_the_file_afresh(db_path: Path) -> None:
    with CallStore(db_path) as store:
        for n in range(4):
            store.add_call(ended(n, 10.0 * n, 10.0 * n + 5), now=10.0 * n + 5)
    with CallStore(db_path, retention=Retention(max_calls=2)) as store:
        assert store.prune(now=100.0).calls == 2
        assert {c.sid for c in store.list_calls(ALICE).items} == {sid(2), sid(3)}


def test_retention_bounds_must_be_positive() -> None:
    for bad in ({"max_calls": 0}, {"max_age_s": -1.0}, {"max_age_s": math.inf}):
        with pytest.raises(ValueError, match="retention"):
            Retention(**bad)


# -- a restart ---------------------------------------------------------------------------------
def test_everything_survives_closing_and_reopening_the_file(db_path: Path) -> None:
    with CallStore(db_path) as store:
        audio = _with_recording(store, 1, ended(1, 100.0, 130.0))
        store.add_call(live(2, start=200.0, account=BOB), now=200.0)
        store.update_call(sid(2), status="in-progress", now=201.0)
        store.add_insights(ALICE, "TJStemp", [event_item(5, 120.0)], now=120.0)
        store.rekey_insights(ALICE, "TJStemp", sid(1), now=121.0)
        before = (
            store.get_call(ALICE, sid(1)),
            store.events(ALICE, sid(1)),
            store.get_recording(ALICE, sid(1, "RE")),
            store.load_insights(ALICE, sid(1)),
        )
    with CallStore(db_path) as store:  # the gateway restarted
        after = (
            store.get_call(ALICE, sid(1)),
            store.events(ALICE, sid(1)),
            store.get_recording(ALICE, sid(1, "RE")),
            store.load_insights(ALICE, sid(1)),
        )
        assert after == before and before[0] is not None
        assert audio.exists()
        assert store.load_insights(ALICE, "TJStemp") == before[3]
        assert store.owner_of("TJStemp") == ALICE
        # the call that was live when the gateway stopped is ended on start
        assert store.close_unfinished(now=300.0) == 1
        cut = store.get_call(BOB, sid(2))
        assert cut is not None
        assert (cut.status, cut.end_time, cut.duration, cut.end_reason) == (
            "completed",
            300.0,
            99.0,
            "gateway stopped",
        )
        assert store.close_unfinished(now=400.0) == 0


def test_close_unfinished_fails_the_calls_never_answered(store: CallStore) -> None:
    store.add_call(live(1, start=100.0), now=100.0)
    store.add_call(ended(2, 100.0, 120.0), now=120.0)
    assert store.close_unfinished(now=150.0, reason="gateway crashed") == 1
    cut = store.get_call(ALICE, sid(1))
    assert cut is not None and (cut.status, cut.duration) == ("failed", None)
    assert cut.end_reason == "gateway crashed"
    assert store.get_call(ALICE, sid(2)) == ended(2, 100.0, 120.0)


# -- malformed input -------------------------------------------------------------------------
BAD_CALLS = {
    "sid": {"sid": "CA123"},
    "sid prefix": {"sid": "PN" + "0" * 32},
    "account": {"account_sid": "ACnothex" + "z" * 26},
    "parent": {"parent_call_sid": "nope"},
    "application": {"application_sid": "AP1"},
    "direction": {"direction": "sideways"},
    "status": {"status": "talking"},
    "negative start": {"start_time": -1.0},
    "nan start": {"start_time": math.nan},
    "bool start": {"start_time": True},
    "answer before start": {"answer_time": 999.0},
    "ended without end": {"status": "completed"},
    "end while live": {"end_time": 2000.0},
    "long from": {"from_": "x" * 257},
    "from not text": {"from_": 12},
    "infinite duration": {"duration": math.inf},
}


@pytest.mark.parametrize("change", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_malformed_calls_are_refused(store: CallStore, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        store.add_call(live(1, **change), now=1000.0)
    assert store.list_calls(ALICE).items == ()
    assert count(store.path, "calls") == 0


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("", {}),
        ("x" * 65, {}),
        ("ok", {"bytes": b"raw"}),
        ("ok", {"nan": math.nan}),
        ("ok", {"big": "x" * 20_000}),
    ],
)
def test_malformed_events_are_refused(store: CallStore, name: str, detail: dict[str, Any]) -> None:
    store.add_call(live(1), now=1000.0)
    with pytest.raises(ValueError):
        store.add_event(sid(1), name, now=1000.0, detail=detail)
    assert store.events(ALICE, sid(1)) == []


@pytest.mark.parametrize(
    "item",
    [
        InsightItem(kind="log", identity="a", received_at=1.0, data="{}"),
        InsightItem(kind="event", identity="a", received_at=1.0, data="not json"),
        InsightItem(kind="event", identity="a", received_at=1.0, data="[1, 2]"),
        InsightItem(kind="event", identity="a", received_at=1.0, data='{"x": NaN}'),
        InsightItem(kind="event", identity="a", received_at=-1.0, data="{}"),
        InsightItem(kind="event", identity="a" * 300, received_at=1.0, data="{}"),
        InsightItem(kind="event", identity="a", received_at=1.0, data='{"x":"' + "y" * 70_000),
    ],
)
def test_malformed_insights_are_refused_and_nothing_of_the_batch_is_kept(
    store: CallStore, item: InsightItem
) -> None:
    with pytest.raises(ValueError):
        store.add_insights(ALICE, sid(1), [event_item(1), item], now=1.0)
    assert store.load_insights(ALICE, sid(1)) == []


@pytest.mark.parametrize("key", ["", "T" * 65])
def test_malformed_insights_keys_are_refused(store: CallStore, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        store.add_insights(ALICE, key, [event_item(1)], now=1.0)


def test_malformed_recordings_are_refused(store: CallStore) -> None:
    store.add_call(live(1), now=1000.0)
    good = Recording(
        sid=sid(1, "RE"),
        call_sid=sid(1),
        account_sid=ALICE,
        path=store.recordings_dir / "a.wav",
        duration=1.0,
        created=1000.0,
    )
    for change in (
        {"sid": "RE1"},
        {"call_sid": "CA1"},
        {"account_sid": "AC1"},
        {"duration": -1.0},
        {"created": math.nan},
    ):
        with pytest.raises(ValueError):
            store.add_recording(attrs.evolve(good, **change))
    store.add_recording(good)
    with pytest.raises(ValueError, match="already stored"):
        store.add_recording(good)
    assert [r.sid for r in store.list_recordings(ALICE).items] == [good.sid]


def test_a_missing_folder_is_created_and_a_directory_path_is_refused(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "calls.sqlite3"
    CallStore(nested).close()
    assert nested.is_file()
    os.mkdir(tmp_path / "dir.sqlite3")
    with pytest.raises(CallStoreError):
        CallStore(tmp_path / "dir.sqlite3")
