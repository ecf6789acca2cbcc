"""``PacketTrack``: already-encoded payloads waiting to be sent on a call leg.

A gateway that forwards RTP between two legs pushes the payloads one leg
receives into a ``PacketTrack`` and hands it to the other leg
(:meth:`PeerConnection.use_packet_track`), whose :class:`SendTrack` sends them
as they are: no decoding, no encoding, no second jitter buffer
(aiortc-probe.md §5: about 10x cheaper than decode and re-encode, half the
latency, no tandem coding).

Timestamps are pushed in the payload codec's RTP units on any origin; the
:class:`SendTrack` rebases them so the leg's RTP timeline continues across
changes of what it sends. Gaps (a lost packet upstream) stay gaps, so the far
end's jitter buffer conceals them. A payload may carry its own payload type
(any codec negotiated on the leg, not only the first).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

__all__ = ["MAX_QUEUED_PACKETS", "PacketTrack", "QueuedPayload"]

MAX_QUEUED_PACKETS = 10
"""Payloads waiting for the sender; past this the oldest is dropped (200 ms at 20 ms)."""


@dataclass(frozen=True, slots=True)
class QueuedPayload:
    """One pushed payload."""

    payload: bytes
    timestamp: int
    """RTP timestamp in the payload codec's clock, any origin."""
    payload_type: int | None
    """None: the leg's first negotiated codec."""


class PacketTrack:
    """A bounded queue of RTP payloads for one leg's sender (see the module doc).

    ``clock_rate`` is the RTP clock of the leg's first negotiated codec. Once
    :meth:`detach` ed (the leg went back to its own audio) it takes nothing more.
    """

    def __init__(self, clock_rate: int, *, max_queued: int = MAX_QUEUED_PACKETS) -> None:
        self.clock_rate = clock_rate
        self._queue: collections.deque[QueuedPayload] = collections.deque()
        self._max_queued = max_queued
        self._waiter: asyncio.Future[None] | None = None
        self._detached = False
        self.packets_pushed = 0
        self.packets_dropped = 0

    def push(self, payload: bytes, timestamp: int, payload_type: int | None = None) -> None:
        """Queue one payload with its RTP timestamp (its codec's clock, any origin).

        ``payload_type`` None sends it with the leg's first negotiated codec's PT.
        """
        if self._detached:
            return
        self._queue.append(QueuedPayload(payload, timestamp, payload_type))
        self.packets_pushed += 1
        if len(self._queue) > self._max_queued:
            self._queue.popleft()
            self.packets_dropped += 1
        self._wake()

    def detach(self) -> None:
        """Stop feeding the sender: drop what is queued and end a waiting :meth:`next`."""
        self._detached = True
        self._queue.clear()
        self._wake()

    @property
    def detached(self) -> bool:
        """True after :meth:`detach`."""
        return self._detached

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> QueuedPayload | None:
        """The oldest queued payload, waiting for one; None once detached."""
        while not self._detached:
            if self._queue:
                return self._queue.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return None
