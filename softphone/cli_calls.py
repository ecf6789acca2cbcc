"""``softphone calls list`` / ``softphone calls show CA…``: the gateway's call history.

Reads the gateway's call store (:mod:`softphone.gateway.call_store`; the file
``softphone gateway --db`` writes, by default under the user's state folder) and
prints calls as a table or, with ``--json``, as JSON (times in ISO 8601 UTC). It
never creates a store: a missing file is a one-line error (exit status 2), and so is
an unknown call (exit status 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from softphone.gateway.accounts import is_sid
from softphone.gateway.call_store import (
    MAX_PAGE_SIZE,
    CallRecord,
    CallStore,
    CallStoreError,
    default_db_path,
)


def add_calls_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``calls`` command and its ``list`` and ``show`` sub-commands."""
    p = sub.add_parser(
        "calls",
        help="the gateway's call history: list calls, show one",
        description=(
            "Print what the gateway's call store kept: calls, their events, recordings "
            f"and insights. The store is the file `softphone gateway --db` writes "
            f"(default {default_db_path()})."
        ),
    )
    p.set_defaults(func=lambda _args: _usage(p))
    commands = p.add_subparsers(dest="calls_command", metavar="COMMAND")

    listing = commands.add_parser(
        "list",
        help="the newest calls, newest first",
        description="The newest calls of one account, or of every account, newest first.",
    )
    _add_db(listing)
    listing.add_argument("--account", metavar="AC…", help="only this account's calls")
    listing.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help=f"how many calls (1-{MAX_PAGE_SIZE}; default 20)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(func=run_list)

    show = commands.add_parser(
        "show",
        help="one call: its record, events, recordings and insights",
        description="One call: its record, its events, its recordings and its insights.",
    )
    show.add_argument("sid", metavar="CA…", help="the CallSid")
    _add_db(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="PATH",
        help=f"the call store file (default {default_db_path()})",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _open(args: argparse.Namespace) -> CallStore:
    """The store named by ``--db`` (or the default); CallStoreError when absent."""
    path = Path(args.db) if args.db else default_db_path()
    if not path.is_file():
        raise CallStoreError(
            f"no call store at {path} (a gateway writes it; `softphone gateway --db PATH`)"
        )
    return CallStore(path)


def run_list(args: argparse.Namespace) -> int:
    """``softphone calls list``."""
    if not 0 < args.limit <= MAX_PAGE_SIZE:
        return _fail(f"--limit must be 1-{MAX_PAGE_SIZE}")
    if args.account is not None and not is_sid(args.account, "AC"):
        return _fail(f"--account must be AC + 32 hex digits, not {args.account!r}")
    try:
        with _open(args) as store:
            accounts = [args.account] if args.account else store.account_sids()
            calls = [
                call
                for account in accounts
                for call in store.list_calls(account, page_size=args.limit).items
            ]
    except CallStoreError as exc:
        return _fail(str(exc))
    calls.sort(key=lambda call: (call.start_time, call.sid), reverse=True)
    calls = calls[: args.limit]
    if args.json:
        print(json.dumps([_call_json(call) for call in calls], indent=2))
    elif not calls:
        print("no calls stored")
    else:
        for line in _table(calls, with_account=len(accounts) > 1):
            print(line)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``softphone calls show CA…``."""
    if not is_sid(args.sid, "CA"):
        return _fail(f"a CallSid is CA + 32 hex digits, not {args.sid!r}")
    try:
        with _open(args) as store:
            account = store.owner_of(args.sid)
            call = store.get_call(account, args.sid) if account else None
            if call is None:
                print(f"softphone calls: no call {args.sid} in {store.path}", file=sys.stderr)
                return 1
            events = store.events(call.account_sid, call.sid)
            recordings = store.list_recordings(
                call.account_sid, call_sid=call.sid, page_size=MAX_PAGE_SIZE
            ).items
            insights = store.load_insights(call.account_sid, call.sid)
    except CallStoreError as exc:
        return _fail(str(exc))
    counts = {kind: 0 for kind in ("event", "metric", "feedback")}
    for item in insights:
        counts[item.kind] += 1
    feedback = [json.loads(item.data) for item in insights if item.kind == "feedback"]
    if args.json:
        document = _call_json(call)
        document["events"] = [
            {"time": _iso(e.time), "name": e.name, "detail": e.detail} for e in events
        ]
        document["recordings"] = [
            {
                "sid": r.sid,
                "path": str(r.path),
                "duration": r.duration,
                "created": _iso(r.created),
            }
            for r in recordings
        ]
        document["insights"] = {
            "events": counts["event"],
            "metrics": counts["metric"],
            "feedback": feedback,
        }
        print(json.dumps(document, indent=2))
        return 0
    for line in _details(call):
        print(line)
    print(f"events ({len(events)})")
    for event in events:
        detail = json.dumps(event.detail, separators=(",", ":")) if event.detail else ""
        print(f"  {_clock(event.time)}  {event.name:16} {detail}".rstrip())
    print(f"recordings ({len(recordings)})")
    for rec in recordings:
        print(f"  {rec.sid}  {rec.duration:7.1f} s  {rec.path}")
    print(
        f"insights: {counts['event']} events, {counts['metric']} metrics samples, "
        f"{counts['feedback']} feedback"
    )
    for item in feedback:
        score = item.get("quality_score")
        print(f"  feedback: quality {'declined' if score is None else score}", end="")
        print(f", issue {item['issue_name']}" if item.get("issue_name") else "")
    return 0


# -- formatting ----------------------------------------------------------------------------
def _fail(message: str) -> int:
    print(f"softphone calls: {message}", file=sys.stderr)
    return 2


def _iso(when: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.000Z``."""
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clock(when: float | None) -> str:
    """``2024-05-01 12:00:00`` (UTC), or ``-``."""
    if when is None:
        return "-"
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _call_json(call: CallRecord) -> dict[str, Any]:
    data = call.to_dict()
    for key in ("start_time", "answer_time", "end_time"):
        data[key] = _iso(data[key])
    return data


def _duration(call: CallRecord) -> str:
    return "-" if call.duration is None else f"{call.duration:.1f} s"


def _table(calls: list[CallRecord], *, with_account: bool) -> list[str]:
    """One line per call, columns as wide as their widest value."""
    columns = ["SID", "STATUS", "FROM", "TO", "STARTED (UTC)", "DURATION"]
    rows = [[c.sid, c.status, c.from_, c.to, _clock(c.start_time), _duration(c)] for c in calls]
    if with_account:
        columns.insert(1, "ACCOUNT")
        for row, call in zip(rows, calls, strict=True):
            row.insert(1, call.account_sid)
    widths = [max(len(str(v)) for v in column) for column in zip(columns, *rows, strict=True)]
    return [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in (columns, *rows)
    ]


def _details(call: CallRecord) -> list[str]:
    fields = [
        ("account", call.account_sid),
        ("parent", call.parent_call_sid or "-"),
        ("from", call.from_),
        ("to", call.to),
        ("direction", call.direction),
        ("status", call.status),
        ("application", call.application_sid or "-"),
        ("started", _clock(call.start_time) + " UTC"),
        ("answered", _clock(call.answer_time)),
        ("ended", _clock(call.end_time)),
        ("duration", _duration(call)),
        ("end reason", call.end_reason or "-"),
    ]
    return [f"call {call.sid}", *(f"  {name:12} {value}" for name, value in fields)]
