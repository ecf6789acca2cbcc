"""A UDP relay on loopback that impairs media: drop, pass or delay each datagram.

For tests and benchmarks only (the SDK never needs it). Side A's peers send to
:attr:`UdpRelay.port_for_a`; the relay passes their datagrams on to side B, and
B's answers back, deciding for each datagram with the policy of its direction
(:attr:`UdpRelay.a_to_b`, :attr:`UdpRelay.b_to_a`): pass it, drop it, or hold
it back for some milliseconds. Two ways to put it on a path:

* between two peer connections (or a device and the gateway), by rewriting the
  ICE candidates of the SDPs they exchange: each side then sees the relay
  exactly where its SDP says the other side is, so ICE, DTLS and SRTP run
  through it untouched::

      relay = UdpRelay()
      offer = relay.from_a(await a.create_offer(src))     # b now sends to the relay
      answer = relay.from_b(await b.create_answer(offer, src))
      await a.apply_answer(answer)                         # a now sends to the relay
      relay.a_to_b.policy = chain(loss(3.0, seed=1), fixed_delay(40))

* in front of one port, like a NAT on the path (``UdpRelay(target=(host, port))``):
  each peer that sends to :attr:`~UdpRelay.port_for_a` gets its own socket
  towards the target, so the target sees the relay's address (a peer-reflexive
  candidate) and its replies come back through the relay to that peer.

A policy is any callable taking a :class:`Datagram` and returning a
:class:`Decision`; :func:`loss`, :func:`drop_rtp`, :func:`fixed_delay`,
:func:`drop_all` and :func:`chain` make the usual ones. Each direction counts
what it saw, dropped and passed (:class:`RelayDirection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "DROP",
    "PASS",
    "Datagram",
    "Decision",
    "Direction",
    "Policy",
    "RandomLoss",
    "RelayDirection",
    "UdpRelay",
    "candidate_address",
    "chain",
    "delay_by",
    "drop_all",
    "drop_rtp",
    "fixed_delay",
    "is_rtp",
    "loss",
    "pass_all",
    "rewrite_candidates",
]

Address = tuple[str, int]
Direction = Literal["a_to_b", "b_to_a"]

_CANDIDATE: Final = re.compile(
    r"^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) (\S+) (\d+) typ host(.*)$", re.MULTILINE
)
_MAX_DATAGRAM: Final = 65536
_READS_PER_WAKEUP: Final = 64


def is_rtp(datagram: bytes) -> bool:
    """RTP (not RTCP, STUN or DTLS) by RFC 7983 demultiplexing and the RTCP type range."""
    return len(datagram) >= 12 and 128 <= datagram[0] <= 191 and not 192 <= datagram[1] <= 223


def candidate_address(sdp: str) -> Address:
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


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram as a policy sees it."""

    direction: Direction
    data: bytes
    index: int
    """Its place among every datagram of this direction, from 0."""
    rtp_index: int | None
    """Its place among the RTP packets of this direction, from 0; None when not RTP."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to a datagram: dropped, or delivered after ``delay_ms``."""

    drop: bool = False
    delay_ms: float = 0.0


PASS: Final = Decision()
"""Deliver at once."""
DROP: Final = Decision(drop=True)
"""Never deliver."""

Policy = Callable[[Datagram], Decision]
"""Decides the fate of each datagram of a direction."""


def delay_by(ms: float) -> Decision:
    """Deliver after ``ms`` milliseconds."""
    if ms < 0:
        raise ValueError(f"a delay cannot be negative: {ms} ms")
    return Decision(delay_ms=float(ms))


def pass_all(datagram: Datagram) -> Decision:
    """Every datagram goes through at once (the default)."""
    return PASS


def drop_all(datagram: Datagram) -> Decision:
    """Every datagram is dropped, STUN and DTLS too: a dead path."""
    return DROP


def fixed_delay(ms: float) -> Policy:
    """Every datagram (STUN, DTLS and RTCP too) arrives ``ms`` later, in order."""
    decision = delay_by(ms)
    return lambda datagram: decision


def drop_rtp(indices: Iterable[int]) -> Policy:
    """Drop exactly these RTP packets (by :attr:`Datagram.rtp_index`), pass the rest."""
    chosen = frozenset(indices)
    return lambda d: DROP if d.rtp_index is not None and d.rtp_index in chosen else PASS


class RandomLoss:
    """Drops ``percent`` % of RTP packets at random, reproducibly (see :func:`loss`)."""

    def __init__(self, percent: float, *, seed: int = 0, after: int = 0) -> None:
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"a loss percentage is between 0 and 100, not {percent}")
        self.percent = percent
        self.seed = seed
        self.after = after
        self._rngs: dict[Direction, random.Random] = {}
        self._decided: dict[Direction, list[bool]] = {}

    def drops(self, rtp_index: int, direction: Direction = "a_to_b") -> bool:
        """Whether RTP packet ``rtp_index`` of ``direction`` is dropped (stable per index)."""
        decided = self._decided.setdefault(direction, [])
        rng = self._rngs.setdefault(direction, random.Random(self.seed))
        rate = self.percent / 100.0
        while len(decided) <= rtp_index:
            index = len(decided)
            decided.append(index >= self.after and rng.random() < rate)
        return decided[rtp_index]

    def __call__(self, datagram: Datagram) -> Decision:
        if datagram.rtp_index is None:
            return PASS
        return DROP if self.drops(datagram.rtp_index, datagram.direction) else PASS


def loss(percent: float, *, seed: int = 0, after: int = 0) -> RandomLoss:
    """Drop each RTP packet from RTP index ``after`` on with probability ``percent`` %.

    Deterministic: the same seed drops the same packet indices on every run
    (each direction draws from its own ``random.Random(seed)``, so give the two
    directions different seeds for independent patterns). STUN, DTLS and RTCP
    always pass, so the call still sets up.
    """
    return RandomLoss(percent, seed=seed, after=after)


def chain(*policies: Policy) -> Policy:
    """All of ``policies`` in turn: dropped if any drops, delayed by the sum of their delays."""

    def decide(datagram: Datagram) -> Decision:
        delay = 0.0
        for policy in policies:
            decision = policy(datagram)
            if decision.drop:
                return DROP
            delay += decision.delay_ms
        return delay_by(delay) if delay else PASS

    return decide


# --------------------------------------------------------------------------- the relay


@dataclass
class RelayDirection:
    """One direction of a relay: its policy and what it counted."""

    name: Direction
    policy: Policy = pass_all
    datagrams: int = 0
    """Datagrams the policy decided on."""
    rtp: int = 0
    """Of which RTP packets."""
    dropped: int = 0
    rtp_dropped: int = 0
    delayed: int = 0
    """Datagrams passed with a delay (also counted in :attr:`passed`)."""

    @property
    def passed(self) -> int:
        """Datagrams delivered (or still waiting for their delay)."""
        return self.datagrams - self.dropped

    def decide(self, data: bytes) -> Decision:
        """Count ``data`` and ask the policy about it."""
        rtp_index = self.rtp if is_rtp(data) else None
        decision = self.policy(Datagram(self.name, data, self.datagrams, rtp_index))
        self.datagrams += 1
        if rtp_index is not None:
            self.rtp += 1
        if decision.drop:
            self.dropped += 1
            if rtp_index is not None:
                self.rtp_dropped += 1
        elif decision.delay_ms > 0:
            self.delayed += 1
        return decision


class _Socket:
    """A non-blocking UDP socket on the running loop, bound to a free port of ``host``."""

    def __init__(self, host: str, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self._on_datagram = on_datagram
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = self.sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error of an earlier send (the peer's port is closed)
            self._on_datagram(data, (addr[0], addr[1]))

    def send(self, data: bytes, addr: Address) -> None:
        if self.sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):  # a full buffer, a closed peer: a lost datagram
            self.sock.sendto(data, addr)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


@dataclass(order=True)
class _Held:
    due: float
    sequence: int
    out: _Socket = field(compare=False)
    data: bytes = field(compare=False)
    addr: Address = field(compare=False)


class UdpRelay:
    """Relays UDP between side A's peers and side B, each datagram as its policy says.

    ``target``: side B's address when known up front (NAT use); otherwise
    :meth:`from_b` learns it from B's SDP. Create it inside a running event
    loop; :meth:`close` closes every socket. With a fixed delay, datagrams keep
    their order within a direction.
    """

    def __init__(self, host: str = "127.0.0.1", *, target: Address | None = None) -> None:
        self.host = host
        self.a_to_b = RelayDirection("a_to_b")
        self.b_to_a = RelayDirection("b_to_a")
        self._b = target
        self._front = _Socket(host, self._from_a)
        self._declared_peer: Address | None = None
        self._declared = _Socket(host, lambda data, _: self._to_a(data, self._declared_peer))
        """The upstream of the A peer an SDP declared (:meth:`from_a`): where B sends."""
        self._upstreams: dict[Address, _Socket] = {}
        """Per peer of side A: the socket its datagrams leave from towards B."""
        self._sockets = [self._front, self._declared]
        self._held: list[_Held] = []
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def port_for_a(self) -> int:
        """Where side A's peers send (what A's SDP from the other side must say)."""
        return self._front.port

    @property
    def port_for_b(self) -> int:
        """Where side B sends to reach the A peer declared by :meth:`from_a`."""
        return self._declared.port

    @property
    def peers(self) -> list[Address]:
        """Side A's peers seen or declared so far."""
        return list(self._upstreams)

    def set_policy(self, policy: Policy) -> None:
        """Use ``policy`` in both directions."""
        self.a_to_b.policy = self.b_to_a.policy = policy

    def from_a(self, sdp: str) -> str:
        """Learn side A's address from its SDP; return the SDP to hand to side B."""
        previous = self._declared_peer
        if previous is not None and self._upstreams.get(previous) is self._declared:
            del self._upstreams[previous]
        self._declared_peer = candidate_address(sdp)
        self._upstreams[self._declared_peer] = self._declared
        return rewrite_candidates(sdp, self.host, self.port_for_b)

    def from_b(self, sdp: str) -> str:
        """Learn side B's address from its SDP; return the SDP to hand to side A."""
        self._b = candidate_address(sdp)
        return rewrite_candidates(sdp, self.host, self.port_for_a)

    def _from_a(self, data: bytes, peer: Address) -> None:
        if self._b is None or self._closed:
            return
        decision = self.a_to_b.decide(data)
        if decision.drop:
            return
        upstream = self._upstreams.get(peer)
        if upstream is None:
            upstream = _Socket(self.host, lambda data, _: self._to_a(data, peer))
            self._upstreams[peer] = upstream
            self._sockets.append(upstream)
        self._deliver(decision, upstream, data, self._b)

    def _to_a(self, data: bytes, peer: Address | None) -> None:
        if peer is None or self._closed:
            return
        decision = self.b_to_a.decide(data)
        if not decision.drop:
            self._deliver(decision, self._front, data, peer)

    def _deliver(self, decision: Decision, out: _Socket, data: bytes, addr: Address) -> None:
        if decision.delay_ms <= 0:
            out.send(data, addr)
            return
        due = asyncio.get_running_loop().time() + decision.delay_ms / 1000.0
        heapq.heappush(self._held, _Held(due, next(self._sequence), out, data, addr))
        if self._timer is None or self._held[0].due < self._timer.when():
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held and not self._closed:
            self._timer = asyncio.get_running_loop().call_at(self._held[0].due, self._release)

    def _release(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._held and self._held[0].due <= now:
            held = heapq.heappop(self._held)
            held.out.send(held.data, held.addr)
        self._schedule()

    def close(self) -> None:
        """Close every socket; datagrams still held back are lost."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()
        for sock in self._sockets:
            sock.close()
