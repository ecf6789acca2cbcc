"""Small media parts without a call: the packet queue, the UDP relay, delay measurement."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from benchmarks.udp_relay import (
    DROP,
    PASS,
    Datagram,
    Decision,
    Direction,
    UdpRelay,
    candidate_address,
    chain,
    delay_by,
    drop_all,
    drop_rtp,
    fixed_delay,
    is_rtp,
    loss,
    pass_all,
    rewrite_candidates,
)
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.media.latency import TimedSink, TimedSource, delay_at
from softphone.media.packet_track import PacketTrack, QueuedPayload

SDP = (
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    "a=candidate:def 1 udp 2130706431 127.0.0.1 40002 typ host generation 0\r\n"
    "a=end-of-candidates\r\n"
)


async def test_packet_track_queues_pushed_payloads_until_detached() -> None:
    track = PacketTrack(48000, max_queued=2)
    track.push(b"a", 960, payload_type=0)
    assert await track.next() == QueuedPayload(b"a", 960, 0)
    for index in range(3):
        track.push(bytes([index]), index)
    assert track.packets_dropped == 1 and track.packets_pushed == 4  # the oldest went
    assert await track.next() == QueuedPayload(b"\x01", 1, None)
    pending = asyncio.ensure_future(track.next())
    await asyncio.sleep(0)
    assert pending.done()  # what was queued goes first
    waiting = asyncio.ensure_future(track.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    track.detach()
    assert await waiting is None  # a waiting sender is let go
    track.push(b"late", 5)
    assert await track.next() is None and track.packets_pushed == 4


def test_relay_helpers() -> None:
    assert candidate_address(SDP) == ("127.0.0.1", 40000)
    rewritten = rewrite_candidates(SDP, "127.0.0.9", 5)
    assert rewritten.count("127.0.0.9 5 typ host") == 2 and "generation 0" in rewritten
    assert is_rtp(bytes([0x80, 96]) + bytes(10))
    assert not is_rtp(bytes([0x80, 200]) + bytes(10))  # RTCP
    assert not is_rtp(bytes([0x00, 0x01]) + bytes(18))  # STUN
    assert not is_rtp(bytes([22, 254]) + bytes(10))  # DTLS


def _rtp(direction: Direction, index: int) -> Datagram:
    return Datagram(direction, bytes([0x80, 96]) + bytes(10), index, index)


def test_relay_policies() -> None:
    policy = loss(50.0, seed=3, after=10)
    decisions = [policy.drops(i) for i in range(200)]
    assert not any(decisions[:10]) and 60 < sum(decisions) < 130
    assert decisions == [policy.drops(i) for i in range(200)]  # stable per index
    assert decisions == [loss(50.0, seed=3, after=10).drops(i) for i in range(200)]  # per run
    assert decisions != [loss(50.0, seed=4, after=10).drops(i) for i in range(200)]
    # each direction has its own draws: the other direction's packets do not shift them
    both = loss(50.0, seed=3, after=10)
    assert [both(_rtp("b_to_a", i)).drop for i in range(200)] == decisions
    assert [both(_rtp("a_to_b", i)).drop for i in range(200)] == decisions
    assert sum(loss(5.0, seed=1).drops(i) for i in range(4000)) in range(160, 241)
    stun = Datagram("a_to_b", bytes(20), 0, None)
    assert loss(100.0)(stun) == PASS and loss(100.0)(_rtp("a_to_b", 0)) == DROP
    with pytest.raises(ValueError):
        loss(101.0)
    assert [drop_rtp([2])(_rtp("a_to_b", i)).drop for i in range(4)] == [False, False, True, False]
    assert drop_rtp([0])(stun) == PASS and drop_all(stun) == DROP and pass_all(stun) == PASS
    assert fixed_delay(40)(stun) == Decision(delay_ms=40.0)
    assert chain(fixed_delay(40), fixed_delay(10))(stun).delay_ms == 50.0
    assert chain(fixed_delay(40), drop_rtp([0]))(_rtp("a_to_b", 0)) == DROP
    assert chain()(stun) == PASS
    with pytest.raises(ValueError):
        delay_by(-1)


class _Endpoint(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that queues what it receives."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int], float]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> _Endpoint:
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait((data, addr, asyncio.get_running_loop().time()))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def receive(self, count: int) -> list[tuple[bytes, tuple[str, int], float]]:
        return [await asyncio.wait_for(self.got.get(), 2) for _ in range(count)]

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


async def test_relay_passes_datagrams_and_drops_rtp_by_policy() -> None:
    a, b = await _Endpoint.open(), await _Endpoint.open()
    relay = UdpRelay()
    try:
        relay.from_a(rewrite_candidates(SDP, "127.0.0.1", a.port))
        relay.from_b(rewrite_candidates(SDP, "127.0.0.1", b.port))
        relay.a_to_b.policy = drop_rtp([1])
        rtp = [bytes([0x80, 96, 0, i]) + bytes(8) for i in range(3)]
        stun = bytes([0x00, 0x01]) + bytes(18)
        for datagram in [*rtp, stun]:
            a.send(datagram, relay.port_for_a)
        received = await b.receive(3)
        assert [data for data, _, _ in received] == [rtp[0], rtp[2], stun]
        assert {addr for _, addr, _ in received} == {("127.0.0.1", relay.port_for_b)}
        b.send(b"reply", relay.port_for_b)  # B answers where A's SDP now says A is
        ((data, addr, _),) = await a.receive(1)
        assert data == b"reply" and addr == ("127.0.0.1", relay.port_for_a)
        forward, back = relay.a_to_b, relay.b_to_a
        assert (forward.datagrams, forward.rtp, forward.dropped, forward.passed) == (4, 3, 1, 3)
        assert forward.rtp_dropped == 1
        assert (back.datagrams, back.rtp, back.dropped, back.passed) == (1, 0, 0, 1)
    finally:
        relay.close()
        a.close()
        b.close()


async def test_relay_delays_every_datagram_in_order() -> None:
    a, b = await _Endpoint.open(), await _Endpoint.open()
    relay = UdpRelay()
    try:
        relay.from_a(rewrite_candidates(SDP, "127.0.0.1", a.port))
        relay.from_b(rewrite_candidates(SDP, "127.0.0.1", b.port))
        relay.a_to_b.policy = fixed_delay(80)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        for index in range(20):
            a.send(bytes([0x80, 96, 0, index]) + bytes(8), relay.port_for_a)
        received = await b.receive(20)
        assert [data[3] for data, _, _ in received] == list(range(20))
        assert min(at for _, _, at in received) - sent_at >= 0.08
        assert relay.a_to_b.delayed == relay.a_to_b.passed == 20
        b.send(b"undelayed", relay.port_for_b)  # the other direction has its own policy
        ((data, _, _),) = await a.receive(1)
        assert data == b"undelayed" and relay.b_to_a.delayed == 0
    finally:
        relay.close()
        a.close()
        b.close()


async def test_relay_in_front_of_a_port_gives_each_peer_its_own_address() -> None:
    target, first, second = await _Endpoint.open(), await _Endpoint.open(), await _Endpoint.open()
    relay = UdpRelay(target=("127.0.0.1", target.port))
    try:
        first.send(b"from first", relay.port_for_a)
        second.send(b"from second", relay.port_for_a)
        arrivals = {data: addr for data, addr, _ in await target.receive(2)}
        assert arrivals[b"from first"] != arrivals[b"from second"]  # one mapping per peer
        assert relay.peers == [("127.0.0.1", first.port), ("127.0.0.1", second.port)]
        target.send(b"to second", arrivals[b"from second"][1])
        target.send(b"to first", arrivals[b"from first"][1])
        assert [d for d, _, _ in await second.receive(1)] == [b"to second"]
        assert [d for d, _, _ in await first.receive(1)] == [b"to first"]
        relay.set_policy(drop_all)  # a dead path: both directions, every kind of datagram
        first.send(b"lost", relay.port_for_a)
        target.send(b"lost too", arrivals[b"from first"][1])
        await asyncio.sleep(0.1)
        assert target.got.empty() and first.got.empty()
        assert relay.a_to_b.dropped == relay.b_to_a.dropped == 1
        relay.set_policy(pass_all)
        first.send(b"back", relay.port_for_a)
        assert [d for d, _, _ in await target.receive(1)] == [b"back"]
    finally:
        relay.close()
        for endpoint in (target, first, second):
            endpoint.close()


def test_delay_is_measured_from_the_audio_and_the_block_times() -> None:
    now = [0.0]
    clip = (np.random.default_rng(5).standard_normal(SAMPLE_RATE) * 3000).astype(np.int16)
    source = TimedSource(clip, clock=lambda: now[0])
    sink = TimedSink(clock=lambda: now[0])
    sink.write(np.zeros(960 * 3, dtype=np.int16))  # 60 ms of silence first
    for _ in range(40):  # the path delays everything by 3 blocks plus 1.5 ms of samples
        block = source.read(960)
        now[0] += 0.02
        sink.write(np.concatenate([np.zeros(72, np.int16), block[:-72]]))
    measured = delay_at(source, sink, 960 * 10, window_s=0.2)
    assert measured is not None and measured.correlation > 0.9
    assert measured.seconds == pytest.approx(0.02 + 0.0015, abs=1e-6)
    assert delay_at(source, sink, 0) is None  # silence matches nothing
    assert delay_at(source, sink, 10**6) is None  # not recorded yet


def test_add_opus_fmtp_adds_missing_keys_only() -> None:
    from softphone.media.sdp import add_opus_fmtp, opus_fmtp

    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
    created = add_opus_fmtp(sdp, {"useinbandfec": "1"})
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n" in created
    merged = add_opus_fmtp(created.replace("useinbandfec=1", "minptime=10"), {"useinbandfec": "1"})
    assert "a=fmtp:96 minptime=10;useinbandfec=1\r\n" in merged
    kept = add_opus_fmtp(created, {"useinbandfec": "0"})
    assert kept == created  # an existing key wins
    fmtp = opus_fmtp(merged)
    assert fmtp is not None and fmtp.use_inband_fec
    assert add_opus_fmtp("v=0\r\nm=audio 9 RTP/AVP 0\r\n", {"a": "1"}).endswith("0\r\n")
