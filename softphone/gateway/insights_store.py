"""The gateway's insights store: what SDKs publish about each call, kept per call.

What: the REST API hands it the bodies SDKs post to ``/v4/EndpointEvents`` and
``/v4/EndpointMetrics`` (the JS SDK's insights envelope, see
:mod:`softphone.insights.events`) together with the verified token's account and
identity. The store checks the body, finds the call it is about and keeps, per call,
the events, the metrics samples and the feedback (``feedback/received`` and
``feedback/received-none`` events, also kept among the events).

Which call: an event names ``call_sid`` (``CA…``) and/or ``temp_call_sid`` (the
client's ``TJS…`` id, the only one it has before the gateway answers the invite); a
metrics record names ``call_sid``. Events for a temporary id are kept under that id
until an event names both ids, then they join the CallSid's entry.

Whose call: only the account that owns a call may add to it. While a call is live the
gateway's call router says whose it is (:class:`LiveCalls`); afterwards the entry
remembers the account it was opened for. A CallSid the gateway cannot place (never
live here, no entry yet) is refused (404); another account's call is refused (403).
A temporary id unknown to the router is the poster's own (it cannot be guessed).

Bounds (:class:`InsightsLimits`), so a hostile client cannot grow memory without
limit: body size, name lengths; events, samples, feedback and bytes per call (beyond
them items are dropped and counted); entries and bytes per account and overall
(beyond them the least recently updated entries are evicted, the account's own
first). Items are kept as compact JSON bytes, so the byte bounds are close to the
memory they cost.

Pure: no I/O; the time is passed in.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from typing import Any, Final, Protocol

import attrs

from softphone.gateway.calls import CallRouter
from softphone.insights.events import FEEDBACK_GROUP

__all__ = [
    "CallDirectory",
    "CallInsights",
    "InsightsLimits",
    "InsightsRejected",
    "InsightsSink",
    "InsightsStore",
    "LiveCalls",
    "Poster",
    "StoreResult",
    "StoredItem",
    "entry_of",
]

LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
ITEM_OVERHEAD_BYTES: Final = 120
"""What one stored item costs beyond its JSON text (object, list slot, timestamps)."""


@attrs.frozen(kw_only=True)
class InsightsLimits:
    """How much the store keeps (see each field); the defaults fit any real call."""

    max_body_bytes: int = 64 * 1024
    """Largest post accepted (a JS metrics batch of 10 samples is about 6 KiB)."""
    max_name_chars: int = 128
    """Longest ``group``, ``name``, ``level`` and ``timestamp``."""
    max_sid_chars: int = 64
    """Longest ``call_sid`` / ``temp_call_sid`` (ours are 34 and 39)."""
    max_events_per_call: int = 4000
    max_samples_per_call: int = 7200
    """Two hours of one-second samples."""
    max_feedback_per_call: int = 16
    max_call_bytes: int = 8 * 1024 * 1024
    """Stored bytes per call; items beyond it are dropped (and counted)."""
    max_calls: int = 1000
    """Calls kept overall; the least recently updated is evicted beyond it."""
    max_calls_per_account: int = 500
    max_account_bytes: int = 32 * 1024 * 1024
    """Stored bytes of one account; its least recently updated calls go first."""
    max_total_bytes: int = 64 * 1024 * 1024
    """Stored bytes overall."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            if getattr(self, field.name) < 1:
                raise ValueError(f"insights limit {field.name} must be positive")


class InsightsRejected(Exception):
    """A post the store refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class Poster:
    """Who posted: the account and identity of the verified token."""

    account_sid: str
    identity: str


class InsightsSink(Protocol):
    """Where kept items are also written (the durable call store), if anywhere."""

    def kept(
        self, account_sid: str, key: str, items: list[tuple[str, StoredItem]], now: float
    ) -> None:
        """``items`` (kind ``event``/``metric``/``feedback``, item) were kept under ``key``."""

    def joined(self, account_sid: str, temp_sid: str, call_sid: str, now: float) -> None:
        """The temporary id's items now belong to ``call_sid``."""


class CallDirectory(Protocol):
    """Tells whose call a sid is, as far as the gateway knows."""

    def owner_of(self, sid: str) -> str | None:
        """The account of the live call with this CallSid (either leg) or temporary id."""
        ...


class LiveCalls:
    """A :class:`CallDirectory` over the gateway's live calls."""

    def __init__(self, router: CallRouter) -> None:
        self.router = router

    def owner_of(self, sid: str) -> str | None:
        """The account of the live call that ``sid`` names, or None."""
        for call in self.router.calls:
            sids = {call.sid, call.caller.callsid, call.caller.temp_sid}
            sids.update(leg.callsid for leg in call.callees)
            if sid in sids:
                return call.account_sid
        return None


@attrs.define(slots=True)
class StoredItem:
    """One stored event, sample or feedback: its JSON text and who sent it when."""

    received_at: float
    identity: str
    data: bytes

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


@attrs.define(eq=False)
class CallInsights:
    """Everything kept about one call."""

    key: str
    """The CallSid, or the temporary id while no event named the CallSid."""
    account_sid: str
    call_sid: str | None
    temp_sids: set[str] = attrs.field(factory=set)
    events: list[StoredItem] = attrs.field(factory=list)
    """Each event as posted (the JS envelope), oldest first."""
    samples: list[StoredItem] = attrs.field(factory=list)
    """Each metrics record (one per sample), oldest first."""
    feedback: list[StoredItem] = attrs.field(factory=list)
    """``{quality_score, issue_name, timestamp, identity}`` per feedback event;
    ``quality_score`` None when declined (``received-none``)."""
    dropped: int = 0
    """Items refused because a per-call bound was reached."""
    size: int = 0
    """Bytes stored (JSON text plus :data:`ITEM_OVERHEAD_BYTES` per item)."""


@attrs.frozen
class StoreResult:
    """What became of one post."""

    key: str
    """The entry the items went to (CallSid, or temporary id)."""
    stored: int
    dropped: int


class InsightsStore:
    """Events, samples and feedback per call, bounded (see the module doc)."""

    def __init__(
        self,
        directory: CallDirectory,
        limits: InsightsLimits | None = None,
        sink: InsightsSink | None = None,
    ) -> None:
        """``sink``: where kept items are also written, so they outlive this process."""
        self.directory = directory
        self.sink = sink
        self.limits = limits or InsightsLimits()
        self._calls: collections.OrderedDict[str, CallInsights] = collections.OrderedDict()
        """Entries, least recently updated first."""
        self._aliases: dict[str, str] = {}
        """Temporary id -> the CallSid entry it joined."""
        self.total_bytes = 0
        self.evicted = 0
        """Entries evicted to stay within the overall and per-account bounds."""

    def __len__(self) -> int:
        return len(self._calls)

    # -- reading -------------------------------------------------------------------------
    def get(self, account_sid: str, sid: str) -> CallInsights | None:
        """The entry for a CallSid or temporary id, if ``account_sid`` owns it."""
        entry = self._calls.get(self._aliases.get(sid, sid))
        if entry is None or entry.account_sid != account_sid:
            return None
        return entry

    def account_bytes(self, account_sid: str) -> int:
        """Bytes stored for one account."""
        return sum(e.size for e in self._calls.values() if e.account_sid == account_sid)

    # -- writing -------------------------------------------------------------------------
    def add_event(self, poster: Poster, body: bytes, *, now: float) -> StoreResult:
        """Keep one ``/v4/EndpointEvents`` body; :class:`InsightsRejected` if refused."""
        event = self._envelope(body)
        payload = event["payload"]
        if not isinstance(payload, dict):
            raise InsightsRejected(400, "'payload' must be an object")
        call_sid = self._sid(payload, "call_sid")
        if call_sid is not None and call_sid.startswith("TJ"):
            call_sid = None  # a temporary id in call_sid: JS never sends one
        temp_sid = self._sid(payload, "temp_call_sid")
        if call_sid is None and temp_sid is None:
            raise InsightsRejected(400, "payload names neither call_sid nor temp_call_sid")
        entry = self._entry_for(poster, call_sid, temp_sid, now)
        items = [(entry.events, self.limits.max_events_per_call, _compact(event))]
        if event["group"] == FEEDBACK_GROUP:
            record = {
                "quality_score": payload.get("quality_score"),
                "issue_name": payload.get("issue_name"),
                "timestamp": event["timestamp"],
                "identity": poster.identity,
            }
            items.append((entry.feedback, self.limits.max_feedback_per_call, _compact(record)))
        return self._keep(entry, poster, items, now)

    def add_metrics(self, poster: Poster, body: bytes, *, now: float) -> StoreResult:
        """Keep one ``/v4/EndpointMetrics`` body (records of one call)."""
        event = self._envelope(body)
        records = event["payload"]
        if not isinstance(records, list) or not records:
            raise InsightsRejected(400, "'payload' must be a non-empty list of records")
        if not all(isinstance(record, dict) for record in records):
            raise InsightsRejected(400, "every metrics record must be an object")
        sids = {self._sid(record, "call_sid") for record in records}
        if len(sids) != 1 or None in sids:
            raise InsightsRejected(400, "every record must name the same call_sid")
        call_sid = sids.pop()
        assert call_sid is not None
        entry = self._entry_for(poster, call_sid, None, now)
        limit = self.limits.max_samples_per_call
        items = [(entry.samples, limit, _compact(record)) for record in records]
        return self._keep(entry, poster, items, now)

    # -- validation ------------------------------------------------------------------------
    def _envelope(self, body: bytes) -> dict[str, Any]:
        if len(body) > self.limits.max_body_bytes:
            raise InsightsRejected(413, f"body over {self.limits.max_body_bytes} bytes")
        try:
            event = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            raise InsightsRejected(400, "body is not JSON") from exc
        if not isinstance(event, dict):
            raise InsightsRejected(400, "body must be a JSON object")
        for key in ("group", "name", "level", "timestamp"):
            value = event.get(key)
            if not isinstance(value, str) or not 0 < len(value) <= self.limits.max_name_chars:
                raise InsightsRejected(
                    400, f"'{key}' must be a string of 1-{self.limits.max_name_chars} characters"
                )
        if event["level"] not in LEVELS:
            raise InsightsRejected(400, f"'level' must be one of {', '.join(sorted(LEVELS))}")
        return event

    def _sid(self, payload: dict[str, Any], key: str) -> str | None:
        value = payload.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > self.limits.max_sid_chars:
            raise InsightsRejected(
                400, f"'{key}' must be a string of at most {self.limits.max_sid_chars} characters"
            )
        return value

    # -- attribution ---------------------------------------------------------------------
    def _entry_for(
        self, poster: Poster, call_sid: str | None, temp_sid: str | None, now: float
    ) -> CallInsights:
        """The entry the poster may add to, made if needed; refuses another's call."""
        account = poster.account_sid
        if call_sid is None:
            assert temp_sid is not None
            entry = self._calls.get(self._aliases.get(temp_sid, temp_sid))
            owner = entry.account_sid if entry else self.directory.owner_of(temp_sid)
            self._check_owner(owner or account, account, temp_sid)
            if entry is None:
                entry = self._open(temp_sid, account, None)
                entry.temp_sids.add(temp_sid)
            return entry
        entry = self._calls.get(call_sid)
        owner = self.directory.owner_of(call_sid) or (entry.account_sid if entry else None)
        if owner is None:
            raise InsightsRejected(404, f"call {call_sid} is not known to this gateway")
        self._check_owner(owner, account, call_sid)
        if entry is None:
            entry = self._open(call_sid, account, call_sid)
        if temp_sid is not None and temp_sid not in entry.temp_sids:
            self._join(entry, temp_sid, now)
        return entry

    @staticmethod
    def _check_owner(owner: str, account: str, sid: str) -> None:
        if owner != account:
            raise InsightsRejected(403, f"call {sid} belongs to another account")

    def _open(self, key: str, account: str, call_sid: str | None) -> CallInsights:
        entry = CallInsights(key=key, account_sid=account, call_sid=call_sid)
        self._calls[key] = entry
        return entry

    def _join(self, entry: CallInsights, temp_sid: str, now: float) -> None:
        """Move the temporary id's entry (same account) into the CallSid's and alias it."""
        early = self._calls.get(temp_sid)
        if early is not None and early is not entry:
            if early.account_sid != entry.account_sid:
                return  # not this call's: leave both alone
            del self._calls[temp_sid]
            entry.events[:0] = early.events
            entry.samples[:0] = early.samples
            entry.feedback[:0] = early.feedback
            entry.dropped += early.dropped
            entry.size += early.size
            entry.temp_sids |= early.temp_sids
            self._bound_lists(entry)
        entry.temp_sids.add(temp_sid)
        self._aliases[temp_sid] = entry.key
        if self.sink is not None:
            self.sink.joined(entry.account_sid, temp_sid, entry.key, now)

    def _bound_lists(self, entry: CallInsights) -> None:
        """After a merge: the per-call counts still hold (oldest items dropped)."""
        limits = self.limits
        for items, limit in (
            (entry.events, limits.max_events_per_call),
            (entry.samples, limits.max_samples_per_call),
            (entry.feedback, limits.max_feedback_per_call),
        ):
            excess = len(items) - limit
            if excess > 0:
                removed = sum(_cost(item) for item in items[:excess])
                del items[:excess]
                entry.size -= removed
                self.total_bytes -= removed
                entry.dropped += excess

    # -- keeping and bounding ------------------------------------------------------------
    def _keep(
        self,
        entry: CallInsights,
        poster: Poster,
        items: Iterable[tuple[list[StoredItem], int, bytes]],
        now: float,
    ) -> StoreResult:
        stored = dropped = 0
        kept: list[tuple[str, StoredItem]] = []
        for target, limit, data in items:
            item = StoredItem(now, poster.identity, data)
            cost = _cost(item)
            if len(target) >= limit or entry.size + cost > self.limits.max_call_bytes:
                dropped += 1
                continue
            target.append(item)
            kept.append((_kind(entry, target), item))
            entry.size += cost
            self.total_bytes += cost
            stored += 1
        if kept and self.sink is not None:
            self.sink.kept(entry.account_sid, entry.key, kept, now)
        entry.dropped += dropped
        self._calls.move_to_end(entry.key)
        self._evict(entry.account_sid)
        return StoreResult(entry.key, stored, dropped)

    def _evict(self, account: str) -> None:
        """Evict least recently updated entries until every bound holds again."""
        limits = self.limits
        own = [e for e in self._calls.values() if e.account_sid == account]
        own_bytes = sum(e.size for e in own)
        while own and (
            len(own) > limits.max_calls_per_account or own_bytes > limits.max_account_bytes
        ):
            victim = own.pop(0)
            own_bytes -= victim.size
            self._remove(victim)
        while len(self._calls) > limits.max_calls or self.total_bytes > limits.max_total_bytes:
            self._remove(next(iter(self._calls.values())))

    def _remove(self, entry: CallInsights) -> None:
        del self._calls[entry.key]
        for temp_sid in entry.temp_sids:
            if self._aliases.get(temp_sid) == entry.key:
                del self._aliases[temp_sid]
        self.total_bytes -= entry.size
        self.evicted += 1


def _kind(entry: CallInsights, target: list[StoredItem]) -> str:
    if target is entry.events:
        return "event"
    return "metric" if target is entry.samples else "feedback"


def entry_of(
    account_sid: str, key: str, temp_sids: Iterable[str], items: Iterable[tuple[str, StoredItem]]
) -> CallInsights | None:
    """A call's entry rebuilt from durable items (kind, item); None without any."""
    entry = CallInsights(
        key=key,
        account_sid=account_sid,
        call_sid=key if key.startswith("CA") else None,
        temp_sids=set(temp_sids),
    )
    lists = {"event": entry.events, "metric": entry.samples, "feedback": entry.feedback}
    for kind, item in items:
        lists[kind].append(item)
        entry.size += _cost(item)
    return entry if entry.size else None


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _cost(item: StoredItem) -> int:
    return len(item.data) + ITEM_OVERHEAD_BYTES


def _no_constants(name: str) -> object:
    """``json.loads`` hook: NaN and Infinity are not JSON (``JSON.stringify`` never writes them)."""
    raise ValueError(f"{name} is not JSON")
