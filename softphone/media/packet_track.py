"""``PacketTrack``: an aiortc audio track that yields already-encoded packets.

aiortc's sender encodes whatever ``AudioFrame`` its track yields, but sends an
``av.Packet`` as it is (``Encoder.pack``: the path aiortc's media player uses
for pre-encoded media). A gateway that forwards RTP between two legs pushes the
received payloads into a ``PacketTrack`` installed on the other leg's sender:
no decoding, no encoding, no second jitter buffer (aiortc-probe.md §5: about
10x cheaper than decode and re-encode, half the latency, no tandem coding).

Timestamps are pushed in the payload codec's RTP units on any origin; the
sender hook in :mod:`softphone.media.aiortc_hooks` rebases them so the leg's
RTP timeline continues across track changes. Gaps (a lost packet upstream)
stay gaps, so the far end's jitter buffer conceals them. A payload may carry
its own payload type (any codec negotiated on the leg, not only the first):
:attr:`PacketTrack.payload_type` tells the send hook which one to stamp.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

__all__ = ["MAX_QUEUED_PACKETS", "PacketTrack"]

MAX_QUEUED_PACKETS = 10
"""Packets waiting for the sender; past this the oldest is dropped (200 ms at 20 ms)."""


class PacketTrack(MediaStreamTrack):
    """Yields pushed RTP payloads as ``av.Packet`` for an aiortc sender to send as is.

    ``clock_rate`` is the RTP clock of the leg's first negotiated codec: the
    sender's time base, so pushed timestamps pass through unchanged. :meth:`hand_over` passes
    the sender on to another track: the sender may be waiting in
    :meth:`recv` when it is detached, and only a frame or packet gets it out
    (stopping this track instead would end the sender's loop for good).
    """

    kind = "audio"

    def __init__(self, clock_rate: int, *, max_queued: int = MAX_QUEUED_PACKETS) -> None:
        super().__init__()
        self.clock_rate = clock_rate
        self._time_base = fractions.Fraction(1, clock_rate)
        self._queue: collections.deque[tuple[bytes, int, int | None]] = collections.deque()
        self._max_queued = max_queued
        self._waiter: asyncio.Future[None] | None = None
        self._successor: MediaStreamTrack | None = None
        self.packets_pushed = 0
        self.packets_dropped = 0
        self.payload_type: int | None = None
        """Payload type of the packet :meth:`recv` returned last (None: the sender's own)."""

    def push(self, payload: bytes, timestamp: int, payload_type: int | None = None) -> None:
        """Queue one payload with its RTP timestamp (its codec's clock, any origin).

        ``payload_type`` None sends it with the leg's first negotiated codec's PT.
        """
        if self.readyState != "live" or self._successor is not None:
            return
        self._queue.append((payload, timestamp, payload_type))
        self.packets_pushed += 1
        if len(self._queue) > self._max_queued:
            self._queue.popleft()
            self.packets_dropped += 1
        self._wake()

    def hand_over(self, successor: MediaStreamTrack) -> None:
        """From now on (including a pending :meth:`recv`) read from ``successor`` instead."""
        self._successor = successor
        self._queue.clear()
        self._wake()

    def stop(self) -> None:
        """End the track (a sender still reading it stops for good: hand over first)."""
        super().stop()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> Frame | Packet[Any]:
        """The next pushed payload as an ``av.Packet`` (pts = its RTP timestamp).

        After :meth:`hand_over`, whatever the successor yields (an audio frame).
        """
        while True:
            successor = self._successor
            if successor is not None:
                return await successor.recv()
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                payload, timestamp, self.payload_type = self._queue.popleft()
                packet: Packet[Any] = Packet(payload)
                packet.pts = timestamp
                packet.time_base = self._time_base
                return packet
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
