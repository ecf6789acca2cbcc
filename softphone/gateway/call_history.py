"""What the call router tells the durable call store: calls starting, answered, ending.

The router speaks in call terms (:meth:`CallHistory.started`, :meth:`answered`,
:meth:`ended`); this adapter turns them into :class:`~softphone.gateway.call_store.CallStore`
writes queued on its worker thread, with the time from one clock. The router stays
free of SQL, and its tests can pass a recording fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from softphone.gateway.call_store import AsyncCallStore, CallRecord, CallStore

API_END_REASON = "ended by the REST API"
"""End reason of a call ended by the REST API's ``Status`` update."""
REASON_STATUS = {
    "rejected": "busy",
    "no answer": "no-answer",
    "hangup by caller": "canceled",
    API_END_REASON: "canceled",
}
"""Final status of a call that ended unanswered, by the router's end reason."""


class CallHistoryLike(Protocol):
    """What the router reports; see :class:`CallHistory`."""

    def started(
        self,
        sid: str,
        *,
        account_sid: str,
        from_: str,
        to: str,
        direction: str,
        parent_call_sid: str | None = None,
        application_sid: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """A call (or a dialled leg) began ringing."""

    def answered(self, sid: str) -> None:
        """The call was answered."""

    def ended(self, sid: str, *, answered: bool, reason: str, detail: dict[str, Any]) -> None:
        """The call ended; ``detail`` goes with its ``ended`` event."""


def final_status(answered: bool, reason: str) -> str:
    """Twilio's final ``CallStatus`` for a call that ended this way."""
    if answered:
        return "completed"
    return REASON_STATUS.get(reason, "failed")


class CallHistory:
    """Queues the router's reports as call store writes (never waits, never raises)."""

    def __init__(self, store: AsyncCallStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def started(
        self,
        sid: str,
        *,
        account_sid: str,
        from_: str,
        to: str,
        direction: str,
        parent_call_sid: str | None = None,
        application_sid: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Store the new call as ``ringing`` (and an ``invite`` event with ``detail``)."""
        now = self.clock()
        record = CallRecord(
            sid=sid,
            account_sid=account_sid,
            from_=from_,
            to=to,
            direction=direction,
            status="ringing",
            start_time=now,
            parent_call_sid=parent_call_sid,
            application_sid=application_sid,
        )
        self.store.submit(CallStore.add_call, record, now=now)
        if detail:
            self.store.submit(CallStore.add_event, sid, "invite", now=now, detail=detail)

    def answered(self, sid: str) -> None:
        """Mark the call ``in-progress`` (its answer time)."""
        self.store.submit(CallStore.update_call, sid, status="in-progress", now=self.clock())

    def ended(self, sid: str, *, answered: bool, reason: str, detail: dict[str, Any]) -> None:
        """Store the final status, end time and an ``ended`` event."""
        now = self.clock()
        self.store.submit(CallStore.add_event, sid, "ended", now=now, detail=detail)
        self.store.submit(
            CallStore.update_call,
            sid,
            status=final_status(answered, reason),
            now=now,
            end_reason=reason,
        )


__all__ = ["API_END_REASON", "CallHistory", "CallHistoryLike", "final_status"]
