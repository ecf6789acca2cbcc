"""RTP forwarding's fast path on real peer connections: headers, reports, DTMF, threads.

alice <-> leg_a and bob <-> leg_b are real aiortc calls on 127.0.0.1; the
gateway's bridge joins leg_a and leg_b. What bob receives from leg_b must be one
stream (leg_b's SSRC, gapless sequence numbers, timestamps that never go back)
across leg_b's own audio, the forwarded audio and its own audio again; leg_b's
sender reports must count the forwarded packets, RTCP round trips must still
work, DTMF injected on leg_b must ride on the forwarded audio, and no leg whose
packets a tap consumes keeps an idle decoder thread.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from recorders import eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.gateway.media_bridge import Bridge, bridge
from softphone.media import aiortc_hooks as hooks
from softphone.media.aiortc_hooks import ForwardRoute
from softphone.media.peer_connection import PeerConnection
from softphone.media.rtp_tap import RtpTapPacket

pytestmark = pytest.mark.usefixtures("loopback_media")


@dataclass
class Leg:
    """A client and the gateway-side leg it is connected to."""

    client: PeerConnection
    leg: PeerConnection


async def _connect(freq: float, **leg_options: Any) -> Leg:
    client = PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"))
    leg = PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"), **leg_options)
    offer = await client.create_offer(ToneSource([freq]))
    await client.apply_answer(await leg.create_answer(offer, None))
    await eventually(lambda: client.connection_state == leg.connection_state == "connected")
    return Leg(client, leg)


@asynccontextmanager
async def _two_calls(**leg_options: Any) -> AsyncIterator[tuple[Leg, Leg]]:
    a = b = None
    try:
        a = await _connect(1000.0, **leg_options)
        b = await _connect(1500.0, **leg_options)
        yield a, b
    finally:
        for call in (a, b):
            if call is not None:
                await call.client.close()
                await call.leg.close()


def _ssrc(sdp: str | None) -> int:
    found = re.search(r"^a=ssrc:(\d+) ", sdp or "", re.MULTILINE)
    assert found is not None
    return int(found.group(1))


async def _remote_outbound(pc: PeerConnection) -> Any:
    """What ``pc`` last read from its peer's RTCP sender report (None before one)."""
    (receiver,) = pc.rtc_peer_connection.getReceivers()
    report = await receiver.getStats()
    return next((s for s in report.values() if s.type == "remote-outbound-rtp"), None)


async def test_forwarded_packets_continue_the_legs_own_stream() -> None:
    async with _two_calls() as (a, b):
        heard: list[RtpTapPacket] = []
        b.client.add_rtp_tap(heard.append)
        from_alice: list[RtpTapPacket] = []
        a.leg.add_rtp_tap(from_alice.append)
        await eventually(lambda: len(heard) >= 20)  # leg_b's own (silent) audio
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].sent_directly >= 50)
        joined.close()
        after = len(heard)
        await eventually(lambda: len(heard) >= after + 20)  # leg_b's own audio again

        to_bob = joined.stats()[0]
        assert to_bob.forwarded >= 50 and to_bob.sent_directly >= to_bob.forwarded - 10
        alice_payloads = {p.payload for p in from_alice}
        forwarded = [p for p in heard if p.payload in alice_payloads]
        assert len(forwarded) >= 50
        assert b.client.send_codec is not None
        assert {p.payload_type for p in heard} == {b.client.send_codec.pt}
        assert {p.ssrc for p in heard} == {_ssrc(b.leg.local_sdp)}
        sequence = [p.sequence_number for p in heard]
        assert all((y - x) % 65536 == 1 for x, y in itertools.pairwise(sequence))
        steps = [(y.timestamp - x.timestamp) % 2**32 for x, y in itertools.pairwise(heard)]
        # 20 ms apart within a producer; whole frames (and forward) at each switch
        assert all(step % 960 == 0 and 0 < step < 48000 for step in steps)
        assert sum(step != 960 for step in steps) <= 6


async def test_sender_reports_count_forwarded_packets_and_round_trips_still_work() -> None:
    async with _two_calls() as (a, b):
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].sent_directly >= 100)
        sent = (await b.leg.get_stats())["packetsSent"]
        assert sent >= joined.stats()[0].sent_directly

        async def reported() -> bool:
            report = await _remote_outbound(b.client)
            return report is not None and report.packetsSent >= sent

        await _until(reported)
        report = await _remote_outbound(b.client)
        stats = await b.leg.get_stats()
        assert report.packetsSent <= stats["packetsSent"]
        assert 0 < report.bytesSent <= stats["bytesSent"]
        # bob echoed the NTP time of leg_b's (patched) report: leg_b knows its RTT
        await _until(lambda: _has_rtt(b.leg))
        joined.close()


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll an async ``predicate`` until it is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def _has_rtt(pc: PeerConnection) -> bool:
    rtt = (await pc.get_stats())["rtt"]
    return rtt is not None and 0 <= rtt < 1


async def test_dtmf_injected_on_a_leg_rides_on_the_forwarded_audio() -> None:
    async with _two_calls() as (a, b):
        digits: list[str] = []
        b.client.on_dtmf = digits.append
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].sent_directly >= 10)
        # leg_b's own sender loop is idle while it forwards: only forwarded packets
        # can carry the events
        await b.leg.insert_dtmf("15", duration_ms=100, gap_ms=50)
        await eventually(lambda: digits == ["1", "5"])
        joined.close()


def _decoder_thread(pc: PeerConnection) -> Any:
    (receiver,) = pc.rtc_peer_connection.getReceivers()
    return receiver._RTCRtpReceiver__decoder_thread


async def test_only_receivers_whose_decoded_audio_is_read_keep_a_decoder_thread() -> None:
    async with _two_calls() as (a, b):  # our receive path: aiortc's track is never read
        for pc in (a.client, a.leg, b.client, b.leg):
            assert _decoder_thread(pc) is None
    async with _two_calls(receive_path="aiortc") as (a, b):
        assert _decoder_thread(a.leg).is_alive()  # aiortc's receive path decodes there
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].sent_directly >= 10)
        # consumed while bridged, but stopping the thread would end the track it reads
        assert _decoder_thread(a.leg).is_alive()
        joined.close()
        hears = MemorySink()
        a.leg.set_remote_sink(hears)
        await eventually(lambda: len(hears.pcm()) >= 48000 // 2)  # it still decodes


# ---------------------------------------------------------------------- the fused path


def _route(joined: Bridge, direction: int = 0) -> ForwardRoute:
    route = joined._directions[direction].route
    assert route is not None, "the fused path was not installed"
    return route


def _general(joined: Bridge, direction: int = 0) -> int:
    """Packets of a direction the general path (tap, track, sink) forwarded."""
    stats = joined.stats()[direction]
    return stats.forwarded - stats.fused


async def test_a_plain_bridged_call_takes_the_fused_path_numbered_as_the_general_one() -> None:
    async with _two_calls() as (a, b):
        heard: list[RtpTapPacket] = []
        b.client.add_rtp_tap(heard.append)
        from_alice: list[RtpTapPacket] = []
        a.leg.add_rtp_tap(from_alice.append)  # another tap on the source: fed as before
        joined = bridge(a.leg, b.leg)
        route = _route(joined)
        await eventually(lambda: joined.stats()[0].fused >= 30)
        assert joined.stats()[1].fused > 0  # both directions
        # Compared from here: where the bridge began, leg_b's stream moved from its own
        # sender to the forwarded payloads, re-anchored by the time that passed (one
        # frame, or two when the loop was late: OutgoingRtp's rule, not this path's).
        compared_from = len(heard)
        # the general path takes over and hands back, mid-stream
        route.enabled = False
        fused, general = joined.stats()[0].fused, _general(joined)
        await eventually(lambda: _general(joined) >= general + 30)
        assert joined.stats()[0].fused == fused
        route.enabled = True
        await eventually(lambda: joined.stats()[0].fused >= fused + 30)
        joined.close()
        assert hooks.ice_restarter(a.leg.rtc_peer_connection).fused is None
        closed_at = joined.stats()[0]

        alice = [p for p in from_alice if p.payload_type == a.leg.codecs[0].pt]
        payloads = {p.payload for p in alice}
        window = [p for p in heard[compared_from:] if p.payload in payloads]
        assert len(window) >= 60  # 30+ on the general path, then 30+ fused again

        def steps(packets: list[RtpTapPacket]) -> list[int]:
            return [(y.timestamp - x.timestamp) % 2**32 for x, y in itertools.pairwise(packets)]

        def same(part: list[RtpTapPacket]) -> bool:
            return [(p.payload, p.marker) for p in part] == [
                (p.payload, p.marker) for p in window
            ] and steps(part) == steps(window)

        # every payload alice's leg received while bridged reached bob once, in order,
        # with its marker bit and timestamp spacing, on one gapless line of leg_b's
        assert any(same(alice[k : k + len(window)]) for k in range(len(alice)))
        sequences = [p.sequence_number for p in window]
        assert all((y - x) % 65536 == 1 for x, y in itertools.pairwise(sequences))
        assert {p.ssrc for p in window} == {_ssrc(b.leg.local_sdp)}
        stats = await b.leg.get_stats()  # SR counts: every packet, whichever path sent it
        assert stats["packetsSent"] >= closed_at.sent_directly


async def test_dtmf_inserted_on_the_target_leaves_the_fused_path_until_the_tones_end() -> None:
    async with _two_calls() as (a, b):
        digits: list[str] = []
        b.client.on_dtmf = digits.append
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].fused >= 10)
        general = _general(joined)
        await b.leg.insert_dtmf("15", duration_ms=100, gap_ms=50)
        await eventually(lambda: digits == ["1", "5"])
        # the event packets replaced forwarded audio on the general path
        assert _general(joined) >= general + 10
        fused = joined.stats()[0].fused
        await eventually(lambda: joined.stats()[0].fused >= fused + 10)  # and back
        joined.close()


async def test_dtmf_received_on_a_bridged_leg_is_detected_and_bob_hears_one_stream() -> None:
    async with _two_calls() as (a, b):
        digits: list[str] = []
        a.leg.on_dtmf = digits.append
        heard: list[RtpTapPacket] = []
        b.client.add_rtp_tap(heard.append)
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].fused >= 10)
        start = len(heard)
        await a.client.insert_dtmf("7", duration_ms=100, gap_ms=50)
        await eventually(lambda: digits == ["7"])
        fused = joined.stats()[0].fused
        await eventually(lambda: joined.stats()[0].fused >= fused + 10)
        joined.close()
        bridged = heard[start:]
        assert {p.payload_type for p in bridged} == {b.leg.codecs[0].pt}  # silence for events
        sequences = [p.sequence_number for p in bridged]
        assert all((y - x) % 65536 == 1 for x, y in itertools.pairwise(sequences))


async def test_a_recorded_source_leg_records_while_the_fused_path_forwards() -> None:
    async with _two_calls() as (a, b):
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].fused >= 10)
        recording = MemorySink()
        a.leg.set_remote_sink(recording)  # what <Dial record> does
        fused = joined.stats()[0].fused
        await eventually(lambda: len(recording.pcm()) >= 48000)
        assert joined.stats()[0].fused >= fused + 25
        assert abs(dominant_frequency(recording.pcm()[-24000:]) - 1000.0) < 30
        joined.close()


async def _restart_ice(offerer: PeerConnection, answerer: PeerConnection) -> None:
    offer = await offerer.restart_ice_offer()
    await offerer.apply_ice_restart_answer(await answerer.answer_ice_restart(offer))


async def test_the_fused_path_follows_ice_restarts_on_both_legs() -> None:
    async with _two_calls() as (a, b):
        heard: list[RtpTapPacket] = []
        b.client.add_rtp_tap(heard.append)
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].fused >= 10)
        await _restart_ice(a.leg, a.client)  # the source leg's path
        await _restart_ice(b.client, b.leg)  # the target leg's path
        start, fused = len(heard), joined.stats()[0].fused
        await eventually(lambda: joined.stats()[0].fused >= fused + 25)
        await eventually(lambda: len(heard) >= start + 25)
        joined.close()
        sequences = [p.sequence_number for p in heard]
        assert all((y - x) % 65536 == 1 for x, y in itertools.pairwise(sequences[start:]))


async def test_the_fused_path_follows_a_dtls_restart_of_the_target_leg() -> None:
    """leg_b's client is replaced by a fresh one (another certificate): leg_b restarts
    DTLS; the forwarded audio reaches the new client under the new SRTP keys."""
    async with _two_calls() as (a, b):
        joined = bridge(a.leg, b.leg)
        await eventually(lambda: joined.stats()[0].fused >= 10)
        keys = b.leg.rtc_peer_connection.getTransceivers()[0].sender.transport._tx_srtp
        carol = PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"))
        carol_hears = MemorySink()
        carol.set_remote_sink(carol_hears)
        try:
            offer = await b.leg.restart_ice_offer()
            await b.leg.apply_ice_restart_answer(await carol.create_answer(offer, None))
            assert (
                b.leg.rtc_peer_connection.getTransceivers()[0].sender.transport._tx_srtp is not keys
            )
            fused = joined.stats()[0].fused
            await eventually(lambda: len(carol_hears.pcm()) >= 48000, timeout=15)
            assert joined.stats()[0].fused >= fused + 25
            assert abs(dominant_frequency(carol_hears.pcm()[-24000:]) - 1000.0) < 30
        finally:
            joined.close()
            await carol.close()
