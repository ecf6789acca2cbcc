"""Small media parts without a call: the packet track, the UDP relay, delay measurement."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from softphone.audio_backends.base import SAMPLE_RATE
from softphone.media.latency import TimedSink, TimedSource, delay_at
from softphone.media.packet_track import PacketTrack
from softphone.media.source_track import SourceTrack
from softphone.media.udp_relay import (
    LossPattern,
    UdpRelay,
    candidate_address,
    is_rtp,
    rewrite_candidates,
)

SDP = (
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    "a=candidate:def 1 udp 2130706431 127.0.0.1 40002 typ host generation 0\r\n"
    "a=end-of-candidates\r\n"
)


async def test_packet_track_yields_pushed_payloads_then_hands_over() -> None:
    track = PacketTrack(48000, max_queued=2)
    track.push(b"a", 960, payload_type=0)
    packet = await track.recv()
    assert bytes(packet) == b"a" and packet.pts == 960
    assert packet.time_base == fractions.Fraction(1, 48000)
    assert track.payload_type == 0
    for index in range(3):
        track.push(bytes([index]), index)
    assert track.packets_dropped == 1  # the oldest went
    assert bytes(await track.recv()) == b"\x01"
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    successor = SourceTrack(None, clock=lambda: 0.0)
    track.push(b"late", 5)
    assert bytes(await pending) == b"\x02"  # what was queued still goes first
    assert bytes(await track.recv()) == b"late"
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.hand_over(successor)
    frame = await waiting  # the waiting sender gets the successor's frame
    assert frame.samples == 960  # type: ignore[union-attr]
    stopped = PacketTrack(8000)
    stopped.stop()
    with pytest.raises(MediaStreamError):
        await stopped.recv()


def test_relay_helpers() -> None:
    assert candidate_address(SDP) == ("127.0.0.1", 40000)
    rewritten = rewrite_candidates(SDP, "127.0.0.9", 5)
    assert rewritten.count("127.0.0.9 5 typ host") == 2 and "generation 0" in rewritten
    assert is_rtp(bytes([0x80, 96]) + bytes(10))
    assert not is_rtp(bytes([0x80, 200]) + bytes(10))  # RTCP
    assert not is_rtp(bytes([0x00, 0x01]) + bytes(18))  # STUN
    assert not is_rtp(bytes([22, 254]) + bytes(10))  # DTLS
    pattern = LossPattern.random(0.5, seed=3, after=10)
    decisions = [pattern.drop(i) for i in range(200)]
    assert not any(decisions[:10]) and 60 < sum(decisions) < 130
    assert decisions == [pattern.drop(i) for i in range(200)]  # stable per index
    assert [LossPattern.indices([2]).drop(i) for i in range(4)] == [False, False, True, False]


async def test_relay_passes_datagrams_and_drops_rtp_by_pattern() -> None:
    loop = asyncio.get_running_loop()
    got_b: asyncio.Queue[bytes] = asyncio.Queue()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got_b.put_nowait(data)

    b_transport, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    a_transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    relay = await UdpRelay.open()
    try:
        a_port = a_transport.get_extra_info("sockname")[1]
        b_port = b_transport.get_extra_info("sockname")[1]
        relay.from_a(rewrite_candidates(SDP, "127.0.0.1", a_port))
        relay.from_b(rewrite_candidates(SDP, "127.0.0.1", b_port))
        relay.loss_a_to_b = LossPattern.indices([1])
        rtp = [bytes([0x80, 96, 0, i]) + bytes(8) for i in range(3)]
        for datagram in [*rtp, bytes([0x00, 0x01]) + bytes(18)]:
            a_transport.sendto(datagram, ("127.0.0.1", relay.port_for_a))
        received = [await asyncio.wait_for(got_b.get(), 2) for _ in range(3)]
        assert received == [rtp[0], rtp[2], bytes([0x00, 0x01]) + bytes(18)]
        assert relay.dropped_a_to_b == 1 and relay.rtp_a_to_b == 3
    finally:
        relay.close()
        a_transport.close()
        b_transport.close()


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
