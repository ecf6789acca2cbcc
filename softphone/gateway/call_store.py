"""The gateway's durable call store: calls, their events, recordings and insights in SQLite.

What: one SQLite file (the standard library's :mod:`sqlite3`, WAL journal) holding

* **calls**: CallSid, AccountSid, parent CallSid, from, to, direction, status,
  start/answer/end times, duration, end reason, ApplicationSid;
* **call events**: per call, a time, a name and a JSON detail (what happened);
* **recordings**: RecordingSid, CallSid, AccountSid, the audio file (kept under the
  store's recordings folder), duration, creation time;
* **insights items**: what SDKs publish about a call (events, metrics samples,
  feedback; :mod:`softphone.gateway.insights_store` keeps them in memory) as JSON
  text with the poster's account and identity, under the CallSid or the client's
  temporary ``TJ…`` id, and the temporary ids that joined a CallSid.

Why a file: the call history (and what ``softphone calls`` and the REST API show)
survives a gateway restart, and the CLI can read it while the gateway writes (WAL
lets readers run next to the one writer).

Whose data: every read that could reach a REST client takes the account and only
returns that account's rows (:meth:`CallStore.get_call`, :meth:`CallStore.list_calls`,
:meth:`CallStore.get_recording`, :meth:`CallStore.list_recordings`,
:meth:`CallStore.load_insights`); another account's sid reads as absent. Writes come
from the gateway itself and name rows by sid.

Bounds (:class:`Retention`): ended calls beyond ``max_calls`` (oldest ended first) or
older than ``max_age_s`` are deleted with their events, recordings (rows and audio
files) and insights, whenever a call is added and by :meth:`CallStore.prune`; events
per call, insights items overall and every text field are bounded too. Calls not yet
ended are never pruned; :meth:`CallStore.close_unfinished` ends the calls a stopped
gateway left open.

Schema: versioned with SQLite's ``user_version``; opening a file runs the missing
:data:`MIGRATIONS` steps in order, each in its own transaction, and refuses a file
written by a newer version. Every statement is parameterised.

Time: passed in as ``now`` (seconds since the epoch); nothing here reads a clock.

Threads: a :class:`CallStore` owns one :class:`sqlite3.Connection` and must be used
from the thread that opened it (sqlite3 checks). The gateway is asyncio and its event
loop also carries media, so it uses :class:`AsyncCallStore`: one worker thread owns
the store, reads are awaited, writes are queued in order without waiting
(:meth:`AsyncCallStore.submit`), so a slow disk (a WAL checkpoint's fsync) never
stalls the loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, Final, Generic, ParamSpec, TypeVar

import attrs

from softphone.gateway.accounts import is_sid

__all__ = [
    "CALL_STATUSES",
    "DIRECTIONS",
    "ENDED_STATUSES",
    "INSIGHT_KINDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AsyncCallStore",
    "CallEvent",
    "CallFilter",
    "CallRecord",
    "CallStore",
    "CallStoreError",
    "InsightItem",
    "Page",
    "PruneResult",
    "Recording",
    "Retention",
    "default_db_path",
]

log = logging.getLogger("softphone.gateway.call_store")

DB_FILE_NAME: Final = "calls.sqlite3"
CALL_STATUSES: Final = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "canceled",
    "failed",
)
"""Twilio's call statuses."""
ENDED_STATUSES: Final = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})
"""Statuses after which a call never changes again."""
DIRECTIONS: Final = ("inbound", "outbound-api", "outbound-dial")
"""Twilio's call directions."""
INSIGHT_KINDS: Final = ("event", "metric", "feedback")
MAX_TEXT_CHARS: Final = 256
"""Longest from, to, end reason, identity."""
MAX_KEY_CHARS: Final = 64
"""Longest insights key (a CallSid is 34 characters, a JS temporary id 39)."""
MAX_EVENT_NAME_CHARS: Final = 64
MAX_EVENT_DETAIL_BYTES: Final = 16 * 1024
MAX_INSIGHT_BYTES: Final = 64 * 1024
"""Largest insights item (the insights store's largest accepted body)."""
MAX_PAGE_SIZE: Final = 1000
"""Twilio's largest ``PageSize``."""
DEFAULT_PAGE_SIZE: Final = 50
"""Twilio's default ``PageSize``."""
BUSY_TIMEOUT_MS: Final = 5000
"""How long a statement waits for another connection's write lock (the CLI reading
during a migration, say) before failing."""
_IN_CHUNK: Final = 500
"""Sids per ``IN (…)`` list (SQLite bounds the number of parameters)."""

P = ParamSpec("P")
T = TypeVar("T")


class CallStoreError(Exception):
    """The store's file cannot be used: not a database, newer schema, unreadable."""


# -- where the file lives ------------------------------------------------------------------
def default_db_path(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The call store's default file.

    ``$SOFTPHONE_HOME/calls.sqlite3`` when ``SOFTPHONE_HOME`` is set (the folder the
    gateway already keeps its generated certificate in), else
    ``$XDG_STATE_HOME/softphone/calls.sqlite3`` (only an absolute ``XDG_STATE_HOME``
    counts, as the XDG spec says), else ``~/.local/state/softphone/calls.sqlite3``.
    """
    env = os.environ if environ is None else environ
    if env.get("SOFTPHONE_HOME"):
        return Path(env["SOFTPHONE_HOME"]) / DB_FILE_NAME
    state = env.get("XDG_STATE_HOME", "")
    if state and Path(state).is_absolute():
        return Path(state) / "softphone" / DB_FILE_NAME
    return (home or Path.home()) / ".local" / "state" / "softphone" / DB_FILE_NAME


# -- records -------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Retention:
    """How much the store keeps (see each field)."""

    max_calls: int = 10_000
    """Calls kept; beyond it the ended calls that ended first are deleted."""
    max_age_s: float = 30 * 86400.0
    """Ended calls (and insights of no stored call) older than this are deleted."""
    max_events_per_call: int = 1000
    """Events kept per call; later ones are refused (:meth:`CallStore.add_event`)."""
    max_insight_items: int = 500_000
    """Insights items kept overall (about 250 MB of metrics); the oldest go first."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"retention {field.name} must be a positive number")


@attrs.frozen(kw_only=True)
class CallRecord:
    """One call as stored (times in seconds since the epoch)."""

    sid: str
    account_sid: str
    from_: str
    to: str
    direction: str
    """``inbound``, ``outbound-api`` or ``outbound-dial`` (:data:`DIRECTIONS`)."""
    status: str
    """One of :data:`CALL_STATUSES`."""
    start_time: float
    parent_call_sid: str | None = None
    application_sid: str | None = None
    answer_time: float | None = None
    end_time: float | None = None
    duration: float | None = None
    """Seconds from answer to end; None while live and for calls never answered
    (Twilio leaves it empty for busy, failed and unanswered calls)."""
    end_reason: str | None = None

    @property
    def ended(self) -> bool:
        """The call has a final status."""
        return self.status in ENDED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The record with Twilio's key names (``from``, not ``from_``)."""
        data = attrs.asdict(self)
        data["from"] = data.pop("from_")
        return data


@attrs.frozen(kw_only=True)
class CallEvent:
    """Something that happened to a call."""

    time: float
    name: str
    detail: dict[str, Any]


@attrs.frozen(kw_only=True)
class Recording:
    """A recording of a call; ``path`` is its audio file (under the recordings folder)."""

    sid: str
    call_sid: str
    account_sid: str
    path: Path
    duration: float
    created: float


@attrs.frozen(kw_only=True)
class InsightItem:
    """One insights event, metrics sample or feedback: its JSON text, who sent it when."""

    kind: str
    """``event``, ``metric`` or ``feedback`` (:data:`INSIGHT_KINDS`)."""
    identity: str
    received_at: float
    data: str
    """Compact JSON text of one object."""


@attrs.frozen(kw_only=True)
class CallFilter:
    """What :meth:`CallStore.list_calls` keeps; None fields do not filter."""

    status: str | None = None
    from_: str | None = None
    to: str | None = None
    parent_call_sid: str | None = None
    start_after: float | None = None
    """Calls that started at or after this time."""
    start_before: float | None = None
    """Calls that started before this time."""


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing, newest first; ``next_page_token`` reads the next one."""

    items: tuple[T, ...]
    next_page_token: str | None


@attrs.frozen
class PruneResult:
    """What one retention pass deleted."""

    calls: int = 0
    recording_files: int = 0
    insight_items: int = 0


# -- migrations ----------------------------------------------------------------------------
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 0 -> 1: calls, their events, recordings.
    (
        """CREATE TABLE calls (
            sid TEXT PRIMARY KEY,
            account_sid TEXT NOT NULL,
            parent_call_sid TEXT,
            from_addr TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            direction TEXT NOT NULL,
            status TEXT NOT NULL,
            start_time REAL NOT NULL,
            answer_time REAL,
            end_time REAL,
            duration REAL,
            end_reason TEXT,
            application_sid TEXT
        )""",
        "CREATE INDEX calls_by_account ON calls (account_sid, start_time, sid)",
        "CREATE INDEX calls_by_end ON calls (end_time) WHERE end_time IS NOT NULL",
        """CREATE TABLE call_events (
            id INTEGER PRIMARY KEY,
            call_sid TEXT NOT NULL REFERENCES calls (sid) ON DELETE CASCADE,
            time REAL NOT NULL,
            name TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX call_events_by_call ON call_events (call_sid, id)",
        """CREATE TABLE recordings (
            sid TEXT PRIMARY KEY,
            call_sid TEXT NOT NULL REFERENCES calls (sid) ON DELETE CASCADE,
            account_sid TEXT NOT NULL,
            path TEXT NOT NULL,
            duration REAL NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX recordings_by_call ON recordings (call_sid)",
        "CREATE INDEX recordings_by_account ON recordings (account_sid, created, sid)",
    ),
    # 1 -> 2: what SDKs publish (the insights store's items) and temporary-id aliases.
    (
        """CREATE TABLE insights (
            id INTEGER PRIMARY KEY,
            call_key TEXT NOT NULL,
            account_sid TEXT NOT NULL,
            kind TEXT NOT NULL,
            identity TEXT NOT NULL,
            received_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX insights_by_key ON insights (call_key, id)",
        "CREATE INDEX insights_by_time ON insights (received_at)",
        """CREATE TABLE insight_aliases (
            temp_sid TEXT PRIMARY KEY,
            call_sid TEXT NOT NULL,
            account_sid TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX insight_aliases_by_call ON insight_aliases (call_sid)",
    ),
)
"""Step ``i`` takes a file from ``user_version`` ``i`` to ``i + 1``; append, never edit."""
SCHEMA_VERSION: Final = len(MIGRATIONS)

_CALL_COLUMNS: Final = (
    "sid, account_sid, parent_call_sid, from_addr, to_addr, direction, status, "
    "start_time, answer_time, end_time, duration, end_reason, application_sid"
)
_CALL_FIELDS: Final = tuple(
    {"from_addr": "from_", "to_addr": "to"}.get(name, name) for name in _CALL_COLUMNS.split(", ")
)
""":class:`CallRecord`'s field for each of :data:`_CALL_COLUMNS`."""


# -- the store -----------------------------------------------------------------------------
class CallStore:
    """Calls, events, recordings and insights in one SQLite file (see the module doc).

    Use from one thread (the one that made it); close it when done (or ``with``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: Retention | None = None,
        recordings_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Open (creating and migrating as needed) the store at ``path``.

        A new file and its folder are made readable by the owner only (call records
        name people). ``recordings_dir`` (default: ``recordings`` next to the file)
        is the only folder whose files the store records and deletes.
        Raises :class:`CallStoreError` when the file cannot be used.
        """
        self.path = Path(path)
        self.retention = retention or Retention()
        self.recordings_dir = Path(recordings_dir or self.path.parent / "recordings").resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CallStoreError(f"cannot open the call store {self.path}: {exc}") from exc
        try:
            self._configure()
            self._migrate()
            self._calls_count = self._scalar("SELECT COUNT(*) FROM calls")
            self._insights_count = self._scalar("SELECT COUNT(*) FROM insights")
        except sqlite3.Error as exc:
            self._db.close()
            raise CallStoreError(f"cannot use {self.path} as a call store: {exc}") from exc
        except CallStoreError:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------
    def _configure(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CallStoreError(f"{self.path}: cannot use the WAL journal (got {mode!r})")
        self._db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints
        self._db.execute("PRAGMA foreign_keys = ON")

    @property
    def schema_version(self) -> int:
        """The file's ``user_version``."""
        return self._scalar("PRAGMA user_version")

    def _migrate(self) -> None:
        """Run each missing migration step in its own transaction."""
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise CallStoreError(
                f"{self.path} has call store schema {version}, newer than this softphone's "
                f"({SCHEMA_VERSION}): upgrade softphone or use another --db"
            )
        for step in range(version, SCHEMA_VERSION):
            with self._transaction():
                if self.schema_version != step:
                    continue  # another process migrated it meanwhile
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {step + 1:d}")
            log.info("call store %s: schema %d -> %d", self.path, step, step + 1)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction (BEGIN IMMEDIATE: the write lock is taken up front)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self._db.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- calls -----------------------------------------------------------------------------
    def add_call(self, call: CallRecord, *, now: float) -> PruneResult:
        """Store a new call (live or already ended), then apply the retention bounds.

        Raises ValueError for a malformed record or a CallSid already stored.
        """
        _check_call(call)
        _check_time("now", now)
        with self._transaction():
            try:
                self._db.execute(
                    f"INSERT INTO calls ({_CALL_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        call.sid,
                        call.account_sid,
                        call.parent_call_sid,
                        call.from_,
                        call.to,
                        call.direction,
                        call.status,
                        call.start_time,
                        call.answer_time,
                        call.end_time,
                        call.duration,
                        call.end_reason,
                        call.application_sid,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"call {call.sid} is already stored") from exc
            self._calls_count += 1
            if self._calls_count > self.retention.max_calls or self._has_expired_calls(now):
                pruned, paths = self._prune_rows(now)
            else:
                pruned, paths = PruneResult(), []
        return attrs.evolve(pruned, recording_files=self._unlink(paths))

    def update_call(
        self, sid: str, *, status: str, now: float, end_reason: str | None = None
    ) -> CallRecord | None:
        """Move a live call to ``status`` at ``now``; the updated record.

        ``in-progress`` sets the answer time; an ended status (:data:`ENDED_STATUSES`)
        sets the end time, the duration (from the answer) and ``end_reason``. Returns
        None for an unknown call or one already ended (ending twice changes nothing).
        ValueError for an unknown status, or going back to ringing once answered.
        """
        if status not in CALL_STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        _check_time("now", now)
        _check_text("end_reason", end_reason, optional=True)
        with self._transaction():
            call = self._get_call(sid)
            if call is None or call.ended:
                return None
            if call.answer_time is not None and status in ("queued", "ringing"):
                raise ValueError(f"call {sid} was answered: it cannot be {status} again")
            answer = call.answer_time
            if status == "in-progress" and answer is None:
                answer = max(now, call.start_time)
            end = duration = None
            if status in ENDED_STATUSES:
                end = max(now, answer or call.start_time)
                duration = None if answer is None else end - answer
            self._db.execute(
                "UPDATE calls SET status = ?, answer_time = ?, end_time = ?, duration = ?, "
                "end_reason = ? WHERE sid = ?",
                (status, answer, end, duration, end_reason if end is not None else None, sid),
            )
            return self._get_call(sid)

    def close_unfinished(self, *, now: float, reason: str = "gateway stopped") -> int:
        """End every call still live (a gateway that stopped or crashed left them).

        Answered calls become ``completed``, the others ``failed``; returns how many.
        Call it when a gateway starts, before it takes calls.
        """
        _check_time("now", now)
        _check_text("reason", reason)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE calls SET "
                "status = CASE WHEN answer_time IS NULL THEN 'failed' ELSE 'completed' END, "
                "end_time = MAX(?, COALESCE(answer_time, start_time)), "
                "duration = CASE WHEN answer_time IS NULL THEN NULL "
                "ELSE MAX(?, answer_time) - answer_time END, "
                "end_reason = ? WHERE end_time IS NULL",
                (now, now, reason),
            )
            return cursor.rowcount

    def get_call(self, account_sid: str, sid: str) -> CallRecord | None:
        """The call ``sid`` if it belongs to ``account_sid``, else None."""
        call = self._get_call(sid)
        return call if call is not None and call.account_sid == account_sid else None

    def _get_call(self, sid: str) -> CallRecord | None:
        row = self._db.execute(f"SELECT {_CALL_COLUMNS} FROM calls WHERE sid = ?", (sid,))
        found = row.fetchone()
        return None if found is None else _call_of(found)

    def list_calls(
        self,
        account_sid: str,
        filters: CallFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
    ) -> Page[CallRecord]:
        """One page of ``account_sid``'s calls, newest start first.

        ValueError for a page size outside 1-:data:`MAX_PAGE_SIZE`, an unknown status
        filter or a page token this store did not hand out.
        """
        f = filters or CallFilter()
        _check_page_size(page_size)
        if f.status is not None and f.status not in CALL_STATUSES:
            raise ValueError(f"unknown call status {f.status!r}")
        _check_text("from", f.from_, optional=True)
        _check_text("to", f.to, optional=True)
        if f.parent_call_sid is not None:
            _check_sid("parent_call_sid", f.parent_call_sid, "CA")
        for name in ("start_after", "start_before"):
            if getattr(f, name) is not None:
                _check_time(name, getattr(f, name))
        where = ["account_sid = ?"]
        params: list[Any] = [account_sid]
        for column, value, op in (
            ("status", f.status, "="),
            ("from_addr", f.from_, "="),
            ("to_addr", f.to, "="),
            ("parent_call_sid", f.parent_call_sid, "="),
            ("start_time", f.start_after, ">="),
            ("start_time", f.start_before, "<"),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if page_token is not None:
            where.append("(start_time, sid) < (?, ?)")
            params.extend(_decode_token("calls", page_token))
        rows = self._db.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(where)} "
            "ORDER BY start_time DESC, sid DESC LIMIT ?",
            (*params, page_size + 1),
        ).fetchall()
        calls = tuple(_call_of(row) for row in rows[:page_size])
        token = None
        if len(rows) > page_size:
            token = _encode_token("calls", calls[-1].start_time, calls[-1].sid)
        return Page(calls, token)

    def account_sids(self) -> list[str]:
        """Every account with a stored call, sorted (for the admin CLI)."""
        rows = self._db.execute("SELECT DISTINCT account_sid FROM calls ORDER BY account_sid")
        return [str(row[0]) for row in rows]

    def owner_of(self, sid: str) -> str | None:
        """The account of a stored call, or of insights kept under ``sid`` (a CallSid or
        temporary id); None when the store knows nothing of it.

        Satisfies the insights store's ``CallDirectory``: after a restart it still
        knows whose ended calls are.
        """
        for sql in (
            "SELECT account_sid FROM calls WHERE sid = ?",
            "SELECT account_sid FROM insight_aliases WHERE temp_sid = ?",
            "SELECT account_sid FROM insights WHERE call_key = ? LIMIT 1",
        ):
            row = self._db.execute(sql, (sid,)).fetchone()
            if row is not None:
                return str(row[0])
        return None

    # -- events ----------------------------------------------------------------------------
    def add_event(
        self, sid: str, name: str, *, now: float, detail: Mapping[str, Any] | None = None
    ) -> bool:
        """Record that ``name`` happened to call ``sid`` at ``now``; False when the call
        is unknown or already has ``max_events_per_call`` events.

        ValueError for an empty or long name, or a detail that is not JSON (or over
        :data:`MAX_EVENT_DETAIL_BYTES`).
        """
        _check_time("now", now)
        if not isinstance(name, str) or not 0 < len(name) <= MAX_EVENT_NAME_CHARS:
            raise ValueError(f"an event name is 1-{MAX_EVENT_NAME_CHARS} characters")
        text = _json_text(dict(detail or {}), "event detail", MAX_EVENT_DETAIL_BYTES)
        with self._transaction():
            if self._db.execute("SELECT 1 FROM calls WHERE sid = ?", (sid,)).fetchone() is None:
                return False
            count = self._scalar("SELECT COUNT(*) FROM call_events WHERE call_sid = ?", (sid,))
            if count >= self.retention.max_events_per_call:
                return False
            self._db.execute(
                "INSERT INTO call_events (call_sid, time, name, detail) VALUES (?, ?, ?, ?)",
                (sid, now, name, text),
            )
        return True

    def events(self, account_sid: str, sid: str) -> list[CallEvent]:
        """The events of ``account_sid``'s call ``sid``, oldest first ([] if not theirs)."""
        rows = self._db.execute(
            "SELECT e.time, e.name, e.detail FROM call_events e JOIN calls c "
            "ON c.sid = e.call_sid WHERE e.call_sid = ? AND c.account_sid = ? ORDER BY e.id",
            (sid, account_sid),
        )
        return [CallEvent(time=t, name=n, detail=json.loads(d)) for t, n, d in rows]

    # -- recordings ------------------------------------------------------------------------
    def add_recording(self, recording: Recording) -> None:
        """Store a recording of a stored call; its file must be under the recordings folder.

        ValueError for a malformed record, a call that is not stored or not the
        account's, a RecordingSid already stored, or a path outside the folder.
        """
        if not is_sid(recording.sid, "RE"):
            raise ValueError(f"a RecordingSid is RE + 32 hex digits, not {recording.sid!r}")
        _check_sid("call_sid", recording.call_sid, "CA")
        _check_sid("account_sid", recording.account_sid, "AC")
        _check_time("duration", recording.duration)
        _check_time("created", recording.created)
        relative = self._relative(recording.path)
        with self._transaction():
            call = self._get_call(recording.call_sid)
            if call is None or call.account_sid != recording.account_sid:
                raise ValueError(
                    f"no call {recording.call_sid} of {recording.account_sid} is stored"
                )
            try:
                self._db.execute(
                    "INSERT INTO recordings (sid, call_sid, account_sid, path, duration, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        recording.sid,
                        recording.call_sid,
                        recording.account_sid,
                        relative,
                        recording.duration,
                        recording.created,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"recording {recording.sid} is already stored") from exc

    def get_recording(self, account_sid: str, sid: str) -> Recording | None:
        """The recording ``sid`` if it belongs to ``account_sid``, else None."""
        row = self._db.execute(
            "SELECT sid, call_sid, account_sid, path, duration, created FROM recordings "
            "WHERE sid = ? AND account_sid = ?",
            (sid, account_sid),
        ).fetchone()
        return None if row is None else self._recording_of(row)

    def list_recordings(
        self,
        account_sid: str,
        *,
        call_sid: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
    ) -> Page[Recording]:
        """One page of ``account_sid``'s recordings (of one call if given), newest first."""
        _check_page_size(page_size)
        where = ["account_sid = ?"]
        params: list[Any] = [account_sid]
        if call_sid is not None:
            where.append("call_sid = ?")
            params.append(call_sid)
        if page_token is not None:
            where.append("(created, sid) < (?, ?)")
            params.extend(_decode_token("recordings", page_token))
        rows = self._db.execute(
            "SELECT sid, call_sid, account_sid, path, duration, created FROM recordings "
            f"WHERE {' AND '.join(where)} ORDER BY created DESC, sid DESC LIMIT ?",
            (*params, page_size + 1),
        ).fetchall()
        items = tuple(self._recording_of(row) for row in rows[:page_size])
        token = None
        if len(rows) > page_size:
            token = _encode_token("recordings", items[-1].created, items[-1].sid)
        return Page(items, token)

    def _relative(self, path: Path) -> str:
        """``path`` relative to the recordings folder (ValueError when outside it)."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.recordings_dir) or resolved == self.recordings_dir:
            raise ValueError(f"recording file {path} is not under {self.recordings_dir}")
        return resolved.relative_to(self.recordings_dir).as_posix()

    def _recording_of(self, row: Sequence[Any]) -> Recording:
        sid, call_sid, account_sid, path, duration, created = row
        return Recording(
            sid=sid,
            call_sid=call_sid,
            account_sid=account_sid,
            path=self.recordings_dir / path,
            duration=duration,
            created=created,
        )

    # -- insights --------------------------------------------------------------------------
    def add_insights(
        self, account_sid: str, key: str, items: Sequence[InsightItem], *, now: float
    ) -> PruneResult:
        """Keep insights items under ``key`` (a CallSid or temporary id) for
        ``account_sid``, then bound the total (oldest items go first).

        The caller (the insights store) has checked who may post; this only checks
        the shape: ValueError for a bad key or kind, a long identity, or data that is
        not one JSON object of at most :data:`MAX_INSIGHT_BYTES`.
        """
        _check_sid("account_sid", account_sid, "AC")
        _check_key(key)
        _check_time("now", now)
        rows = []
        for item in items:
            if item.kind not in INSIGHT_KINDS:
                raise ValueError(f"insights kind must be one of {', '.join(INSIGHT_KINDS)}")
            _check_text("identity", item.identity)
            _check_time("received_at", item.received_at)
            if len(item.data.encode()) > MAX_INSIGHT_BYTES:
                raise ValueError(f"an insights item is at most {MAX_INSIGHT_BYTES} bytes")
            if not isinstance(_loads(item.data, "insights item"), dict):
                raise ValueError("an insights item is one JSON object")
            rows.append((key, account_sid, item.kind, item.identity, item.received_at, item.data))
        with self._transaction():
            self._db.executemany(
                "INSERT INTO insights (call_key, account_sid, kind, identity, received_at, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._insights_count += len(rows)
            dropped = self._bound_insights()
        return PruneResult(insight_items=dropped)

    def rekey_insights(self, account_sid: str, temp_sid: str, call_sid: str, *, now: float) -> int:
        """The temporary id ``temp_sid`` turned out to be ``call_sid``: move its items
        (``account_sid``'s only) under the CallSid and remember the alias. How many moved."""
        _check_key(temp_sid)
        _check_key(call_sid)
        _check_time("now", now)
        with self._transaction():
            moved = self._db.execute(
                "UPDATE insights SET call_key = ? WHERE call_key = ? AND account_sid = ?",
                (call_sid, temp_sid, account_sid),
            ).rowcount
            self._db.execute(
                "INSERT OR IGNORE INTO insight_aliases (temp_sid, call_sid, account_sid, created) "
                "VALUES (?, ?, ?, ?)",
                (temp_sid, call_sid, account_sid, now),
            )
        return moved

    def load_insights(self, account_sid: str, key: str) -> list[InsightItem]:
        """``account_sid``'s items under ``key`` (a CallSid, or a temporary id, joined or
        not), oldest first."""
        alias = self._db.execute(
            "SELECT call_sid FROM insight_aliases WHERE temp_sid = ? AND account_sid = ?",
            (key, account_sid),
        ).fetchone()
        rows = self._db.execute(
            "SELECT kind, identity, received_at, data FROM insights "
            "WHERE call_key = ? AND account_sid = ? ORDER BY id",
            (alias[0] if alias else key, account_sid),
        )
        return [InsightItem(kind=k, identity=i, received_at=r, data=d) for k, i, r, d in rows]

    def temp_sids(self, account_sid: str, call_sid: str) -> list[str]:
        """The temporary ids that joined ``account_sid``'s ``call_sid``."""
        rows = self._db.execute(
            "SELECT temp_sid FROM insight_aliases WHERE call_sid = ? AND account_sid = ? "
            "ORDER BY temp_sid",
            (call_sid, account_sid),
        )
        return [str(row[0]) for row in rows]

    def _bound_insights(self) -> int:
        """Delete the oldest items beyond ``max_insight_items``; how many went."""
        excess = self._insights_count - self.retention.max_insight_items
        if excess <= 0:
            return 0
        deleted = self._db.execute(
            "DELETE FROM insights WHERE id IN (SELECT id FROM insights ORDER BY id LIMIT ?)",
            (excess,),
        ).rowcount
        self._insights_count -= deleted
        return deleted

    # -- retention -------------------------------------------------------------------------
    def prune(self, *, now: float) -> PruneResult:
        """Apply every retention bound at ``now``; what was deleted.

        Counts are taken afresh from the file (run it now and then if anything but
        this store writes the file).
        """
        _check_time("now", now)
        with self._transaction():
            self._calls_count = self._scalar("SELECT COUNT(*) FROM calls")
            self._insights_count = self._scalar("SELECT COUNT(*) FROM insights")
            pruned, paths = self._prune_rows(now)
        return attrs.evolve(pruned, recording_files=self._unlink(paths))

    def _has_expired_calls(self, now: float) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM calls WHERE end_time < ? LIMIT 1", (now - self.retention.max_age_s,)
        ).fetchone()
        return row is not None

    def _prune_rows(self, now: float) -> tuple[PruneResult, list[str]]:
        """Inside a transaction: delete what the bounds exclude; the recording files
        to delete once it commits."""
        cutoff = now - self.retention.max_age_s
        victims = [
            str(row[0])
            for row in self._db.execute("SELECT sid FROM calls WHERE end_time < ?", (cutoff,))
        ]
        excess = self._calls_count - len(victims) - self.retention.max_calls
        if excess > 0:
            victims += [
                str(row[0])
                for row in self._db.execute(
                    "SELECT sid FROM calls WHERE end_time >= ? ORDER BY end_time, sid LIMIT ?",
                    (cutoff, excess),
                )
            ]
        paths: list[str] = []
        insights = 0
        for start in range(0, len(victims), _IN_CHUNK):
            chunk = victims[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            paths += [
                str(row[0])
                for row in self._db.execute(
                    f"SELECT path FROM recordings WHERE call_sid IN ({marks})", chunk
                )
            ]
            insights += self._db.execute(
                f"DELETE FROM insights WHERE call_key IN ({marks})", chunk
            ).rowcount
            self._db.execute(f"DELETE FROM insight_aliases WHERE call_sid IN ({marks})", chunk)
            self._db.execute(f"DELETE FROM calls WHERE sid IN ({marks})", chunk)
        insights += self._db.execute(
            "DELETE FROM insights WHERE received_at < ? "
            "AND call_key NOT IN (SELECT sid FROM calls)",
            (cutoff,),
        ).rowcount
        self._db.execute(
            "DELETE FROM insight_aliases WHERE created < ? "
            "AND call_sid NOT IN (SELECT sid FROM calls)",
            (cutoff,),
        )
        self._calls_count -= len(victims)
        self._insights_count -= insights
        insights += self._bound_insights()
        if victims:
            log.info("call store: %d calls past retention deleted", len(victims))
        return PruneResult(calls=len(victims), insight_items=insights), paths

    def _unlink(self, relative_paths: Sequence[str]) -> int:
        """Delete recording files (only under the recordings folder); how many went."""
        deleted = 0
        for relative in relative_paths:
            path = (self.recordings_dir / relative).resolve()
            if not path.is_relative_to(self.recordings_dir):
                log.warning("call store: not deleting %s: outside the recordings folder", path)
                continue
            try:
                path.unlink()
                deleted += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("call store: cannot delete recording %s: %s", path, exc)
        return deleted


# -- the asyncio side ----------------------------------------------------------------------
class AsyncCallStore:
    """A :class:`CallStore` owned by one worker thread, for an asyncio gateway.

    Every operation runs in that thread in the order it was asked for, so a write
    queued with :meth:`submit` is visible to any later :meth:`run`. Writes the
    gateway does not need to wait for are queued (bounded by ``max_pending``;
    beyond it they are dropped, counted in :attr:`dropped` and logged).
    """

    def __init__(self, executor: ThreadPoolExecutor, store: CallStore, max_pending: int) -> None:
        """Use :meth:`open`."""
        self._executor = executor
        self.store = store
        """The store itself: only touch it through :meth:`run` / :meth:`submit`."""
        self.max_pending = max_pending
        self._pending: set[asyncio.Future[Any]] = set()
        self._closed = False
        self.dropped = 0
        """Writes refused because ``max_pending`` were queued."""
        self.failed = 0
        """Queued writes that raised (each is logged)."""

    @property
    def recordings_dir(self) -> Path:
        """Where recording files must be written to be stored (fixed once open)."""
        return self.store.recordings_dir

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        retention: Retention | None = None,
        recordings_dir: str | os.PathLike[str] | None = None,
        max_pending: int = 10_000,
    ) -> AsyncCallStore:
        """Open the store at ``path`` in a new worker thread (CallStoreError if unusable)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-store")
        opener = functools.partial(
            CallStore, path, retention=retention, recordings_dir=recordings_dir
        )
        try:
            store = await asyncio.get_running_loop().run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, store, max_pending)

    async def run(
        self, fn: Callable[Concatenate[CallStore, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(store, *args, **kwargs)`` in the worker thread; its result.

        E.g. ``await db.run(CallStore.get_call, account_sid, sid)``.
        """
        if self._closed:
            raise RuntimeError("the call store is closed")
        job = functools.partial(fn, self.store, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def submit(
        self, fn: Callable[Concatenate[CallStore, P], object], *args: P.args, **kwargs: P.kwargs
    ) -> bool:
        """Queue ``fn(store, *args, **kwargs)`` without waiting; False when dropped.

        Call from the event loop's thread. Errors are logged, never raised here.
        """
        if self._closed:
            raise RuntimeError("the call store is closed")
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("call store: %d writes dropped (disk too slow?)", self.dropped)
            return False
        job = functools.partial(fn, self.store, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        self._pending.add(future)
        future.add_done_callback(self._written)
        return True

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.failed += 1
            log.error("call store: a write failed: %s", exc, exc_info=exc)

    async def flush(self) -> None:
        """Wait until every queued write has run."""
        if self._pending:
            await asyncio.wait(list(self._pending))

    async def close(self) -> None:
        """Run what is queued, close the file and end the worker thread (idempotent)."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.store.close)
        finally:
            self._executor.shutdown(wait=False)


# -- checks and conversions ----------------------------------------------------------------
def _call_of(row: Sequence[Any]) -> CallRecord:
    return CallRecord(**dict(zip(_CALL_FIELDS, row, strict=True)))


def _check_call(call: CallRecord) -> None:
    """ValueError unless ``call`` is a record the store may keep."""
    _check_sid("sid", call.sid, "CA")
    _check_sid("account_sid", call.account_sid, "AC")
    if call.parent_call_sid is not None:
        _check_sid("parent_call_sid", call.parent_call_sid, "CA")
    if call.application_sid is not None:
        _check_sid("application_sid", call.application_sid, "AP")
    _check_text("from", call.from_)
    _check_text("to", call.to)
    _check_text("end_reason", call.end_reason, optional=True)
    if call.direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if call.status not in CALL_STATUSES:
        raise ValueError(f"unknown call status {call.status!r}")
    _check_time("start_time", call.start_time)
    for name in ("answer_time", "end_time", "duration"):
        value = getattr(call, name)
        if value is not None:
            _check_time(name, value)
    for name in ("answer_time", "end_time"):
        value = getattr(call, name)
        if value is not None and value < call.start_time:
            raise ValueError(f"{name} is before start_time")
    if (call.end_time is None) == call.ended:
        raise ValueError("a call has an end_time exactly when its status is an ended one")


def _check_sid(name: str, value: object, prefix: str) -> None:
    if not is_sid(value, prefix):
        raise ValueError(f"{name} must be {prefix} + 32 hex digits, not {value!r}")


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"an insights key is a sid of 1-{MAX_KEY_CHARS} characters")


def _check_text(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{name} must be a string of at most {MAX_TEXT_CHARS} characters")


def _check_time(name: str, value: object) -> None:
    """Times and durations: finite, not negative, not a bool."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


def _check_page_size(page_size: object) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise ValueError("page_size must be an integer")
    if not 0 < page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}")


def _json_text(value: object, what: str, limit: int) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from exc
    if len(text.encode()) > limit:
        raise ValueError(f"{what} is over {limit} bytes")
    return text


def _loads(text: object, what: str) -> object:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be JSON text")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON") from exc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _encode_token(kind: str, time: float, sid: str) -> str:
    raw = json.dumps([kind, time, sid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(kind: str, token: str) -> tuple[float, str]:
    """The (time, sid) a page token carries; ValueError unless this store made it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = _loads(raw.decode(), "page token")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid page token") from exc
    if (
        isinstance(value, list)
        and len(value) == 3
        and value[0] == kind
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
        and isinstance(value[2], str)
    ):
        return float(value[1]), value[2]
    raise ValueError("invalid page token")
