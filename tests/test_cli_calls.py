"""Issue 12: ``softphone calls list`` / ``softphone calls show CA…`` print the call store.

The CLI runs in-process (``softphone.cli.main``) against a store in ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softphone.cli import build_parser, main
from softphone.gateway.call_store import CallRecord, CallStore, InsightItem, Recording

pytestmark = pytest.mark.pure

ALICE = "AC" + "a" * 32
BOB = "AC" + "b" * 32
T0 = 1_714_564_800.0
"""2024-05-01 12:00:00 UTC."""


def sid(n: int, prefix: str = "CA") -> str:
    return f"{prefix}{n:032x}"


def call(n: int, account: str = ALICE, *, minutes: int = 0) -> CallRecord:
    start = T0 + 60 * minutes
    return CallRecord(
        sid=sid(n),
        account_sid=account,
        from_=f"client:user{n}",
        to="client:bob",
        direction="outbound-api",
        status="completed",
        start_time=start,
        answer_time=start + 2,
        end_time=start + 14.5,
        duration=12.5,
        end_reason="hangup by caller",
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "calls.sqlite3"
    with CallStore(path) as store:
        store.add_call(call(1, minutes=0), now=T0)
        store.add_call(call(2, minutes=1), now=T0)
        store.add_call(call(3, BOB, minutes=2), now=T0)
        store.add_event(sid(1), "ringing", now=T0 + 1, detail={"callee": "bob"})
        store.add_event(sid(1), "answered", now=T0 + 2)
        store.recordings_dir.mkdir()
        store.add_recording(
            Recording(
                sid=sid(1, "RE"),
                call_sid=sid(1),
                account_sid=ALICE,
                path=store.recordings_dir / "r1.wav",
                duration=9.0,
                created=T0 + 14,
            )
        )
        feedback = '{"quality_score":4,"issue_name":"choppy-audio"}'
        store.add_insights(
            ALICE,
            sid(1),
            [
                InsightItem(kind="event", identity="user1", received_at=T0, data="{}"),
                InsightItem(kind="metric", identity="user1", received_at=T0, data="{}"),
                InsightItem(kind="metric", identity="user1", received_at=T0, data="{}"),
                InsightItem(kind="feedback", identity="user1", received_at=T0, data=feedback),
            ],
            now=T0 + 20,
        )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_prints_every_accounts_calls_newest_first(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "calls", "list", "--db", str(db))
    assert status == 0 and err == ""
    header, *rows = out.splitlines()
    columns = ["SID", "ACCOUNT", "STATUS", "FROM", "TO", "STARTED (UTC)", "DURATION"]
    assert [header.index(name) for name in columns] == sorted(header.index(n) for n in columns)
    assert rows[0].index(BOB) == header.index("ACCOUNT")  # columns line up
    assert rows[0].index("2024-05-01 12:02:00") == header.index("STARTED (UTC)")
    assert [row.split()[0] for row in rows] == [sid(3), sid(2), sid(1)]
    expected = f"{sid(1)} {ALICE} completed client:user1 client:bob 2024-05-01 12:00:00 12.5 s"
    assert rows[-1].split() == expected.split()


def test_list_of_one_account_with_a_limit(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "calls", "list", "--db", str(db), "--account", ALICE, "--limit", "1"
    )
    assert status == 0
    lines = out.splitlines()
    assert "ACCOUNT" not in lines[0]
    assert [line.split()[0] for line in lines[1:]] == [sid(2)]


def test_list_as_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "calls", "list", "--db", str(db), "--limit", "2", "--json")
    assert status == 0
    calls = json.loads(out)
    assert [c["sid"] for c in calls] == [sid(3), sid(2)]
    assert calls[1] == {
        "sid": sid(2),
        "account_sid": ALICE,
        "parent_call_sid": None,
        "from": "client:user2",
        "to": "client:bob",
        "direction": "outbound-api",
        "status": "completed",
        "start_time": "2024-05-01T12:01:00.000Z",
        "answer_time": "2024-05-01T12:01:02.000Z",
        "end_time": "2024-05-01T12:01:14.500Z",
        "duration": 12.5,
        "end_reason": "hangup by caller",
        "application_sid": None,
    }


def test_an_empty_store_lists_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.sqlite3"
    CallStore(path).close()
    assert run(capsys, "calls", "list", "--db", str(path)) == (0, "no calls stored\n", "")
    assert run(capsys, "calls", "list", "--db", str(path), "--json") == (0, "[]\n", "")


def test_show_prints_the_call_its_events_recordings_and_insights(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "calls", "show", sid(1), "--db", str(db))
    assert status == 0 and err == ""
    assert out.splitlines()[0] == f"call {sid(1)}"
    assert f"  account      {ALICE}" in out
    assert "  started      2024-05-01 12:00:00 UTC" in out
    assert "  duration     12.5 s" in out
    assert "  end reason   hangup by caller" in out
    assert 'events (2)\n  2024-05-01 12:00:01  ringing          {"callee":"bob"}\n' in out
    assert "  2024-05-01 12:00:02  answered\n" in out
    assert f"recordings (1)\n  {sid(1, 'RE')}      9.0 s  {db.parent / 'recordings/r1.wav'}" in out
    assert "insights: 1 events, 2 metrics samples, 1 feedback" in out
    assert "  feedback: quality 4, issue choppy-audio" in out


def test_show_as_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "calls", "show", sid(1), "--db", str(db), "--json")
    assert status == 0
    document = json.loads(out)
    assert document["sid"] == sid(1) and document["from"] == "client:user1"
    assert document["events"] == [
        {"time": "2024-05-01T12:00:01.000Z", "name": "ringing", "detail": {"callee": "bob"}},
        {"time": "2024-05-01T12:00:02.000Z", "name": "answered", "detail": {}},
    ]
    assert document["recordings"] == [
        {
            "sid": sid(1, "RE"),
            "path": str(db.parent / "recordings" / "r1.wav"),
            "duration": 9.0,
            "created": "2024-05-01T12:00:14.000Z",
        }
    ]
    assert document["insights"] == {
        "events": 1,
        "metrics": 2,
        "feedback": [{"quality_score": 4, "issue_name": "choppy-audio"}],
    }


def test_show_of_an_unknown_or_malformed_callsid(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "calls", "show", sid(9), "--db", str(db))
    assert (status, out) == (1, "")
    assert err == f"softphone calls: no call {sid(9)} in {db}\n"
    status, _, err = run(capsys, "calls", "show", "CA123", "--db", str(db))
    assert status == 2 and "CA + 32 hex digits" in err


def test_a_missing_store_is_an_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere" / "calls.sqlite3"
    for args in (["list"], ["show", sid(1)]):
        status, out, err = run(capsys, "calls", *args, "--db", str(path))
        assert (status, out) == (2, "")
        assert err.startswith(f"softphone calls: no call store at {path}")
    assert not path.parent.exists()


def test_a_file_that_is_not_a_store_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calls.sqlite3"
    path.write_bytes(b"garbage, not SQLite" * 100)
    status, out, err = run(capsys, "calls", "list", "--db", str(path))
    assert (status, out) == (2, "")
    assert err.startswith("softphone calls: cannot use") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be 1-1000"),
        (["--limit", "1001"], "--limit must be 1-1000"),
        (["--account", "bob"], "--account must be AC + 32 hex digits"),
    ],
)
def test_bad_list_options_are_one_line_errors(
    db: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, out, err = run(capsys, "calls", "list", "--db", str(db), *args)
    assert (status, out) == (2, "")
    assert message in err and err.count("\n") == 1


def test_the_default_store_is_under_softphone_home(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTPHONE_HOME", str(db.parent))
    status, out, _ = run(capsys, "calls", "list", "--account", BOB)
    assert status == 0 and sid(3) in out


def test_calls_without_a_command_prints_its_help_and_the_top_help_lists_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "calls")
    assert status == 0 and "list" in out and "show" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "the gateway's call history" in capsys.readouterr().out
