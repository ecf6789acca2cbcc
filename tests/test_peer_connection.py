"""Real loopback calls between two ``PeerConnection`` objects in one event loop.

Everything stays on 127.0.0.1 (``loopback_media`` fixture, no ICE servers).
Assertions wait for audio to *arrive* (sample counts, packet counters), never
for wall-clock limits.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from recorders import eventually

from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.media.peer_connection import PeerConnection
from softphone.media.source_track import SourceTrack

pytestmark = pytest.mark.usefixtures("loopback_media")

TONE_A, TONE_B, TONE_SWAP = 1000.0, 600.0, 1500.0


class SineSource:
    """Phase-continuous sine at 48 kHz."""

    def __init__(self, freq: float, amplitude: int = 8000) -> None:
        self.freq, self.amplitude, self._n = freq, amplitude, 0

    def read(self, samples: int) -> Pcm:
        t = (np.arange(samples) + self._n) / SAMPLE_RATE
        self._n += samples
        return (np.sin(2 * np.pi * self.freq * t) * self.amplitude).astype(np.int16)

    def close(self) -> None:
        pass


@dataclass
class ListSink:
    """Collects everything written to it."""

    chunks: list[Pcm] = field(default_factory=list)
    samples: int = 0

    def write(self, pcm: Pcm) -> None:
        assert pcm.dtype == np.int16 and pcm.ndim == 1
        self.chunks.append(pcm.copy())
        self.samples += len(pcm)

    def close(self) -> None:
        pass

    def tail(self, seconds: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        audio = np.concatenate(self.chunks).astype(np.float64)
        return audio[-int(seconds * SAMPLE_RATE) :]


def dominant_frequency(audio: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(audio))


def rms(audio: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    return float(np.sqrt(np.mean(audio**2)))


async def more_audio(sink: ListSink, seconds: float) -> None:
    """Wait until ``sink`` received ``seconds`` more audio."""
    target = sink.samples + int(seconds * SAMPLE_RATE)
    await eventually(lambda: sink.samples >= target)


@dataclass
class Call:
    a: PeerConnection
    b: PeerConnection
    a_hears: ListSink
    b_hears: ListSink
    offer: str
    answer: str
    b_digits: list[str]


@asynccontextmanager
async def call(
    a_opts: dict[str, Any] | None = None, b_opts: dict[str, Any] | None = None
) -> AsyncIterator[Call]:
    a = PeerConnection(**(a_opts or {}))
    b = PeerConnection(**(b_opts or {}))
    c = Call(a, b, ListSink(), ListSink(), "", "", [])
    a.set_remote_sink(c.a_hears)
    b.set_remote_sink(c.b_hears)
    b.on_dtmf = c.b_digits.append
    try:
        c.offer = await a.create_offer(SineSource(TONE_A))
        c.answer = await b.create_answer(c.offer, SineSource(TONE_B))
        await a.apply_answer(c.answer)
        await eventually(lambda: a.connection_state == b.connection_state == "connected")
        yield c
    finally:
        await a.close()
        await b.close()


async def test_ice_servers_are_explicit() -> None:
    """No ICE servers means host candidates only, never aiortc's public STUN default."""
    pc = PeerConnection(ice_servers=None)
    try:
        await pc.create_offer(SineSource(TONE_A))
        assert pc.rtc_configuration.stun_server is None
        assert pc.rtc_configuration.turn_servers == ()
        assert pc.ice_gathering is not None and set(pc.ice_gathering.candidate_types) == {"host"}
    finally:
        await pc.close()
    with pytest.raises(ValueError, match="urls"):
        PeerConnection(ice_servers=[{"username": "u"}])


class CountingSource(SineSource):
    reads = 0

    def read(self, samples: int) -> Pcm:
        self.reads += 1
        return super().read(samples)


async def test_source_track_drops_late_frames_instead_of_bursting() -> None:
    now = [100.0]
    source = CountingSource(440.0)
    track = SourceTrack(source, clock=lambda: now[0])
    first = await track.recv()
    assert (first.pts, first.samples, first.sample_rate, first.layout.name) == (
        0,
        960,
        48000,
        "mono",
    )
    now[0] += 0.101  # stalled for five frames
    late = await track.recv()
    assert late.pts == 5 * 960 and track.frames_dropped == 4
    assert source.reads == 6  # the dropped frames were read and discarded
    track.muted = True
    now[0] += 0.02
    muted = await track.recv()
    assert muted.pts == 6 * 960 and not muted.to_ndarray().any()
    track.stop()


@pytest.mark.parametrize(
    ("prefs", "codec"), [(("pcmu", "opus"), "PCMU"), (("opus", "pcmu"), "opus")]
)
async def test_call_carries_a_tone_each_way(prefs: tuple[str, ...], codec: str) -> None:
    states: list[str] = []
    async with call({"codec_preferences": prefs}, {"codec_preferences": prefs}) as c:
        c.a.on_connection_state_change = states.append
        tapped: list[Any] = []
        remove_tap = c.b.add_rtp_tap(tapped.append)
        assert c.a.codec == c.b.codec == codec
        assert c.a.can_insert_dtmf and c.b.can_insert_dtmf
        candidates = [line for line in c.offer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in line for line in candidates)
        await more_audio(c.b_hears, 0.8)
        await more_audio(c.a_hears, 0.8)
        assert dominant_frequency(c.b_hears.tail(0.5)) == pytest.approx(TONE_A, abs=4)
        assert dominant_frequency(c.a_hears.tail(0.5)) == pytest.approx(TONE_B, abs=4)
        assert rms(c.b_hears.tail(0.5)) > 2000
        remove_tap()
        step = 160 if codec == "PCMU" else 960
        assert len(tapped) > 20
        assert {p.payload_type for p in tapped} == {0 if codec == "PCMU" else 96}
        assert all(
            (q.sequence_number - p.sequence_number) % 65536 == 1
            and (q.timestamp - p.timestamp) % 2**32 == step
            for p, q in itertools.pairwise(tapped)
        )

        stats = await c.a.get_stats()
        assert stats["codecName"] == codec
        assert stats["packetsSent"] > 0 and stats["packetsReceived"] > 0
        assert stats["bytesSent"] > 0 and stats["bytesReceived"] > 0
        assert stats["packetsLost"] == 0
        assert 0.0 <= stats["jitter"] < 0.1  # seconds, not RTP units
        pair = stats["selectedCandidatePair"]
        assert pair["localAddress"] == pair["remoteAddress"] == "127.0.0.1"
    assert states[-1] == "closed"


async def test_mute_sends_silence_while_packets_keep_flowing() -> None:
    async with call() as c:
        await more_audio(c.b_hears, 0.5)
        assert rms(c.b_hears.tail(0.3)) > 2000
        c.a.muted = True
        assert c.a.muted
        before_sent = (await c.a.get_stats())["packetsSent"]
        before_recv = (await c.b.get_stats())["packetsReceived"]
        await more_audio(c.b_hears, 0.6)
        assert rms(c.b_hears.tail(0.3)) < 50
        assert (await c.a.get_stats())["packetsSent"] >= before_sent + 20
        assert (await c.b.get_stats())["packetsReceived"] >= before_recv + 20
        assert rms(c.a_hears.tail(0.3)) > 2000  # the other direction is untouched
        c.a.muted = False
        await more_audio(c.b_hears, 0.6)
        assert dominant_frequency(c.b_hears.tail(0.3)) == pytest.approx(TONE_A, abs=7)


async def test_replace_source_mid_call_changes_the_far_end_tone() -> None:
    async with call({"codec_preferences": ("opus",)}, {"codec_preferences": ("opus",)}) as c:
        await more_audio(c.b_hears, 0.5)
        assert dominant_frequency(c.b_hears.tail(0.3)) == pytest.approx(TONE_A, abs=7)
        c.a.replace_source(SineSource(TONE_SWAP))
        await more_audio(c.b_hears, 0.6)
        assert dominant_frequency(c.b_hears.tail(0.3)) == pytest.approx(TONE_SWAP, abs=7)


@pytest.mark.parametrize("prefs", [("opus",), ("pcmu",)])
async def test_rfc4733_digits_arrive_in_order_and_audio_survives(prefs: tuple[str, ...]) -> None:
    async with call({"codec_preferences": prefs}, {"codec_preferences": prefs}) as c:
        await more_audio(c.b_hears, 0.3)
        await c.a.insert_dtmf("1234#*0")
        await eventually(lambda: len(c.b_digits) >= 7)
        assert c.b_digits == list("1234#*0")
        # The decoder thread must still be alive: audio keeps arriving, still the tone.
        await more_audio(c.b_hears, 0.6)
        assert dominant_frequency(c.b_hears.tail(0.4)) == pytest.approx(TONE_A, abs=5)
        assert rms(c.b_hears.tail(0.4)) > 2000


async def test_no_telephone_event_when_dtmf_disabled() -> None:
    async with call(None, {"dtmf": False}) as c:
        assert "telephone-event" in c.offer and "telephone-event" not in c.answer
        assert not c.a.can_insert_dtmf and not c.b.can_insert_dtmf
        with pytest.raises(RuntimeError):
            await c.a.insert_dtmf("1")


async def _bytes_per_packet(a_opts: dict[str, Any]) -> tuple[float, float, str]:
    prefs = {"codec_preferences": ("opus",)}
    async with call({**prefs, **a_opts}, prefs) as c:
        await more_audio(c.b_hears, 0.3)  # past the encoder's start-up
        a1, b1 = await c.a.get_stats(), await c.b.get_stats()
        await more_audio(c.b_hears, 1.5)
        a2, b2 = await c.a.get_stats(), await c.b.get_stats()
        assert c.a.codec == "opus"

        def per_packet(s1: dict[str, Any], s2: dict[str, Any]) -> float:
            sent_bytes = s2["bytesSent"] - s1["bytesSent"]
            return float(sent_bytes / (s2["packetsSent"] - s1["packetsSent"]))

        return per_packet(a1, a2), per_packet(b1, b2), c.offer


async def test_max_average_bitrate_lowers_opus_payload_rate() -> None:
    default_a, default_b, offer = await _bytes_per_packet({})
    assert "maxaveragebitrate" not in offer
    capped_a, capped_b, offer = await _bytes_per_packet({"max_average_bitrate": 16000})
    assert "maxaveragebitrate=16000" in offer
    # Our own encoder uses it, and the far end honours it from our SDP's fmtp.
    # 20 ms packets: 16 kbit/s is about 40 bytes; aiortc's default is several times that.
    assert capped_a < 0.5 * default_a
    assert capped_b < 0.5 * default_b
    assert capped_a < 60 and capped_b < 60
