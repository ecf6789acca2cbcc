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

Once the leg's sender runs, the peer connection gives the track a *sink*
(:meth:`use_sink`): pushed payloads then go out at once, on the event-loop step
that brought them, without waiting in the queue for the sender's task (the
gateway's hot path). The queue only holds what comes before the leg connects,
and a payload goes straight out only while nothing is queued, so order is kept.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_QUEUED_PACKETS", "PacketSink", "PacketTrack", "QueuedPayload"]

PacketSink = Callable[[bytes, int, "int | None", bool], bool]
"""``sink(payload, timestamp, payload_type, marker)``: True when sent, False to queue it."""

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
        self._sink: PacketSink | None = None
        self.packets_pushed = 0
        self.packets_dropped = 0
        self.packets_sent_directly = 0

    def use_sink(self, sink: PacketSink | None) -> None:
        """Send pushed payloads through ``sink`` when it takes them (None: queue them all)."""
        self._sink = sink

    def push(
        self,
        payload: bytes,
        timestamp: int,
        payload_type: int | None = None,
        marker: bool = True,
    ) -> None:
        """Send or queue one payload with its RTP timestamp (its codec's clock, any origin).

        ``payload_type`` None sends it with the leg's first negotiated codec's PT.
        ``marker`` is the RTP marker bit for a payload sent through the sink (the
        source packet's; aiortc's own loop sets it on every audio packet).
        """
        if self._detached:
            return
        self.packets_pushed += 1
        sink = self._sink
        if sink is not None and not self._queue and sink(payload, timestamp, payload_type, marker):
            self.packets_sent_directly += 1
            return
        self._queue.append(QueuedPayload(payload, timestamp, payload_type))
        if len(self._queue) > self._max_queued:
            self._queue.popleft()
            self.packets_dropped += 1
        self._wake()

    def detach(self) -> None:
        """Stop feeding the sender: drop what is queued and end a waiting :meth:`next`."""
        self._detached = True
        self._sink = None
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
