"""A UDP relay between two media endpoints on loopback that can lose RTP packets.

For tests, benchmarks and demos: put it between two peer connections (or a
device and the gateway) by rewriting the ICE candidates of the SDPs they
exchange, then choose which RTP packets of each direction never arrive.

::

    relay = await UdpRelay.open()
    offer = relay.from_a(await a.create_offer(src))   # b now sends to the relay
    answer = relay.from_b(await b.create_answer(offer, src))
    await a.apply_answer(answer)                       # a now sends to the relay
    relay.loss_a_to_b = LossPattern.random(0.03, seed=1)

Each side sees the relay's two ports exactly where its SDP says the other
side is, so ICE, DTLS and SRTP run through it untouched; only RTP packets
(not STUN, DTLS or RTCP) count towards a loss pattern.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

__all__ = ["LossPattern", "UdpRelay", "candidate_address", "is_rtp", "rewrite_candidates"]

_CANDIDATE = re.compile(
    r"^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) (\S+) (\d+) typ host(.*)$", re.MULTILINE
)


def is_rtp(datagram: bytes) -> bool:
    """RTP (not RTCP, STUN or DTLS) by RFC 7983 demultiplexing and the RTCP type range."""
    return len(datagram) >= 12 and 128 <= datagram[0] <= 191 and not 192 <= datagram[1] <= 223


def candidate_address(sdp: str) -> tuple[str, int]:
    """The first host candidate's ``(address, port)`` in ``sdp``."""
    match = _CANDIDATE.search(sdp)
    if match is None:
        raise ValueError("the SDP has no host candidate")
    return match.group(5), int(match.group(6))


def rewrite_candidates(sdp: str, host: str, port: int) -> str:
    """Point every host candidate of ``sdp`` at ``host:port``."""
    return _CANDIDATE.sub(
        lambda m: f"a=candidate:{m[1]} {m[2]} {m[3]} {m[4]} {host} {port} typ host{m[7]}", sdp
    )


@dataclass
class LossPattern:
    """Which RTP packets (counted from 0, per direction) are dropped."""

    drop: Callable[[int], bool] = field(default=lambda index: False)

    @classmethod
    def none(cls) -> LossPattern:
        """Drop nothing."""
        return cls()

    @classmethod
    def random(cls, rate: float, *, seed: int = 0, after: int = 0) -> LossPattern:
        """Drop each packet from index ``after`` on with probability ``rate`` (reproducible)."""
        rng = random.Random(seed)
        decisions: dict[int, bool] = {}

        def drop(index: int) -> bool:
            if index not in decisions:
                decisions[index] = index >= after and rng.random() < rate
            return decisions[index]

        return cls(drop)

    @classmethod
    def indices(cls, dropped: Iterable[int]) -> LossPattern:
        """Drop exactly these packet indices."""
        chosen = frozenset(dropped)
        return cls(lambda index: index in chosen)


class _Face(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, addr)


class UdpRelay:
    """Relays UDP between side A and side B through two local ports (see module doc)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.loss_a_to_b = LossPattern.none()
        self.loss_b_to_a = LossPattern.none()
        self.rtp_a_to_b = 0
        self.rtp_b_to_a = 0
        self.dropped_a_to_b = 0
        self.dropped_b_to_a = 0
        self._a: tuple[str, int] | None = None
        self._b: tuple[str, int] | None = None
        self._face_a = _Face(self._from_a)  # the port A sends to
        self._face_b = _Face(self._from_b)  # the port B sends to

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> UdpRelay:
        """A relay with both ports bound on ``host``."""
        relay = cls(host)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: relay._face_a, local_addr=(host, 0))
        await loop.create_datagram_endpoint(lambda: relay._face_b, local_addr=(host, 0))
        return relay

    @property
    def port_for_a(self) -> int:
        """Where side A sends (what A's SDP from the other side must say)."""
        return self._port(self._face_a)

    @property
    def port_for_b(self) -> int:
        """Where side B sends."""
        return self._port(self._face_b)

    @staticmethod
    def _port(face: _Face) -> int:
        assert face.transport is not None, "relay not open"
        return int(face.transport.get_extra_info("sockname")[1])

    def from_a(self, sdp: str) -> str:
        """Learn side A's address from its SDP; return the SDP to hand to side B."""
        self._a = candidate_address(sdp)
        return rewrite_candidates(sdp, self.host, self.port_for_b)

    def from_b(self, sdp: str) -> str:
        """Learn side B's address from its SDP; return the SDP to hand to side A."""
        self._b = candidate_address(sdp)
        return rewrite_candidates(sdp, self.host, self.port_for_a)

    def _from_a(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._b is None or self._face_b.transport is None:
            return
        if is_rtp(data):
            index = self.rtp_a_to_b
            self.rtp_a_to_b += 1
            if self.loss_a_to_b.drop(index):
                self.dropped_a_to_b += 1
                return
        self._face_b.transport.sendto(data, self._b)

    def _from_b(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._a is None or self._face_a.transport is None:
            return
        if is_rtp(data):
            index = self.rtp_b_to_a
            self.rtp_b_to_a += 1
            if self.loss_b_to_a.drop(index):
                self.dropped_b_to_a += 1
                return
        self._face_a.transport.sendto(data, self._a)

    def close(self) -> None:
        """Close both ports."""
        for face in (self._face_a, self._face_b):
            if face.transport is not None:
                face.transport.close()
