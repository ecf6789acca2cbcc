"""Insights kept in the durable call store: written as they arrive, read back later.

What: :class:`StoreSink` is the :class:`~softphone.gateway.insights_store.InsightsSink`
the gateway gives its insights store when it has a call store: every event, sample
and feedback kept in memory is also queued as a call store write, and a temporary
id that joins its CallSid is re-keyed there too. :func:`load_entry` reads a call's
items back (after a restart, or once memory evicted them) for the REST API.
"""

from __future__ import annotations

from softphone.gateway.call_store import AsyncCallStore, CallStore, InsightItem
from softphone.gateway.insights_store import CallInsights, StoredItem, entry_of


class StoreSink:
    """Queues insights writes on the call store's worker (never waits, never raises)."""

    def __init__(self, store: AsyncCallStore) -> None:
        self.store = store

    def kept(
        self, account_sid: str, key: str, items: list[tuple[str, StoredItem]], now: float
    ) -> None:
        """Write the kept items under ``key``."""
        rows = [
            InsightItem(
                kind=kind,
                identity=item.identity,
                received_at=item.received_at,
                data=item.data.decode(),
            )
            for kind, item in items
        ]
        self.store.submit(CallStore.add_insights, account_sid, key, rows, now=now)

    def joined(self, account_sid: str, temp_sid: str, call_sid: str, now: float) -> None:
        """Move the temporary id's rows under the CallSid."""
        self.store.submit(CallStore.rekey_insights, account_sid, temp_sid, call_sid, now=now)


def _load(store: CallStore, account_sid: str, key: str) -> CallInsights | None:
    stored = [
        (item.kind, StoredItem(item.received_at, item.identity, item.data.encode()))
        for item in store.load_insights(account_sid, key)
    ]
    return entry_of(account_sid, key, store.temp_sids(account_sid, key), stored)


async def load_entry(store: AsyncCallStore, account_sid: str, key: str) -> CallInsights | None:
    """``account_sid``'s stored items of the call ``key`` (CallSid or temporary id)."""
    await store.flush()
    return await store.run(_load, account_sid, key)


__all__ = ["StoreSink", "load_entry"]
