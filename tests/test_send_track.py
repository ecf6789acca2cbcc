"""``SendTrack``: our encoder in front of aiortc's sender, forwarding, RTP timeline.

No network: the track is read the way aiortc's sender reads it (``recv()`` in a
loop). That aiortc sends these packets as they are is pinned in
``tests/test_aiortc_hooks.py``; real calls are in ``tests/test_peer_connection.py``.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from softphone.audio_backends.base import Pcm
from softphone.media.opus import OpusSettings
from softphone.media.packet_track import PacketTrack
from softphone.media.sdp import CodecInfo
from softphone.media.send_track import SendTrack
from softphone.media.source_track import SourceTrack

OPUS = CodecInfo(111, "opus", 48000, 2)
PCMU = CodecInfo(0, "PCMU", 8000)


class _Tone:
    def __init__(self) -> None:
        self._n = 0

    def read(self, samples: int) -> Pcm:
        t = np.arange(self._n, self._n + samples)
        self._n += samples
        return (np.sin(t * 0.1) * 8000).astype(np.int16)

    def close(self) -> None:
        pass


def _track() -> SendTrack:
    """A send track on a tone whose clock is always exactly at the next frame (no sleeping)."""
    ticks = itertools.count()
    return SendTrack(SourceTrack(_Tone(), clock=lambda: next(ticks) * 0.02))


async def _sizes(opus: OpusSettings, count: int = 25) -> list[int]:
    track = _track()
    track.configure(OPUS, opus)
    return [len(bytes(await track.recv())) for _ in range(count)]


async def test_opus_is_encoded_mono_with_the_settings_given() -> None:
    track = _track()
    assert track.configure(OPUS, OpusSettings(16000, fec=True))
    packets = [await track.recv() for _ in range(3)]
    assert [p.pts for p in packets] == [0, 960, 1920]
    assert packets[0].time_base == fractions.Fraction(1, 48000)
    assert not bytes(packets[0])[0] & 0x04  # the TOC's stereo flag: mono
    assert track.payload_type is None  # ours: aiortc's PT stays
    # Too late once encoding started: nothing changes (a new encoder would restart Opus).
    assert not track.configure(PCMU, OpusSettings(64000))
    assert track.codec == OPUS and track.opus_settings == OpusSettings(16000, fec=True)
    assert (await track.recv()).pts == 2880
    # The settings reach the encoder: 16 kbit/s is a fraction of the default 96 kbit/s.
    capped = np.mean((await _sizes(OpusSettings(16000)))[5:])
    default = np.mean((await _sizes(OpusSettings()))[5:])
    assert capped < 60 and capped < 0.5 * default


async def test_pcmu_has_no_frame_of_resampler_delay() -> None:
    track = _track()
    track.configure(PCMU, OpusSettings())
    first, second = await track.recv(), await track.recv()
    # FFmpeg's resampler (aiortc's encoder) returns nothing for the first 20 ms; ours 160 samples.
    assert len(bytes(first)) == len(bytes(second)) == 160
    assert first.time_base == fractions.Fraction(1, 8000) and second.pts - first.pts == 160


async def test_muted_audio_is_still_sent_as_silence() -> None:
    track = _track()
    track.configure(PCMU, OpusSettings())
    track.source.muted = True
    packets = [bytes(await track.recv()) for _ in range(3)]
    assert packets == [b"\xff" * 160] * 3  # mu-law silence, one packet every 20 ms


async def test_encoding_waits_for_the_negotiated_codec() -> None:
    track = _track()
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    assert not pending.done() and track.source.frames_sent == 0  # the source is not read yet
    track.configure(PCMU, OpusSettings())
    assert len(bytes(await asyncio.wait_for(pending, 2))) == 160


async def test_timestamps_continue_across_forwarded_packets_and_back() -> None:
    track = _track()
    track.configure(OPUS, OpusSettings())
    stamps = [(await track.recv()).pts for _ in range(3)]
    forwarded = PacketTrack(48000)
    track.use_packets(forwarded)
    assert track.packets is forwarded
    for payload, timestamp, payload_type in [(b"a", 5, None), (b"b", 965, 0), (b"c", 2925, None)]:
        forwarded.push(payload, timestamp, payload_type)  # a lost packet between b and c
    sent: list[tuple[bytes, Any, int | None]] = []
    for _ in range(3):
        packet = await track.recv()
        sent.append((bytes(packet), packet.pts, track.payload_type))
    track.use_packets(None)
    assert forwarded.detached
    stamps += [pts for _, pts, _ in sent] + [(await track.recv()).pts]
    # Continuous at each switch; a gap inside one producer (the lost packet) is kept.
    assert stamps == [0, 960, 1920, 2880, 3840, 5800, 6760]
    assert [(payload, pt) for payload, _, pt in sent] == [(b"a", None), (b"b", 0), (b"c", None)]
    assert track.payload_type is None


async def test_a_sender_waiting_for_forwarded_packets_goes_back_to_our_audio() -> None:
    track = _track()
    track.configure(PCMU, OpusSettings())
    forwarded = PacketTrack(8000)
    track.use_packets(forwarded)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing forwarded yet: the sender waits
    replacement = PacketTrack(8000)
    track.use_packets(replacement)  # a new bridge: the old track lets go
    replacement.push(b"x" * 160, 77)
    assert bytes(await asyncio.wait_for(waiting, 2)) == b"x" * 160
    assert forwarded.detached and not replacement.detached
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    track.use_packets(None)
    ours = await asyncio.wait_for(waiting, 2)
    assert len(bytes(ours)) == 160 and ours.pts == 77 + 160
    replacement.push(b"late", 1)  # ignored once detached
    assert replacement.packets_pushed == 1


async def test_stopping_ends_the_track_and_a_waiting_sender() -> None:
    track = _track()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 2)
    assert track.source.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await track.recv()
