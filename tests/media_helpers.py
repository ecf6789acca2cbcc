"""Shared helpers for the media tests: real speech, loopback calls through a relay."""

from __future__ import annotations

import functools
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recorders import eventually

from benchmarks.udp_relay import UdpRelay
from softphone.audio_backends.analysis import resample
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.media.latency import TimedSink, TimedSource
from softphone.media.peer_connection import PeerConnection

SPEECH = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well."
)


@functools.cache
def _speech(tmp: str) -> Pcm:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    path = Path(tmp) / "speech.wav"
    subprocess.run([espeak, "-w", str(path), SPEECH], check=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    lead = np.zeros(SAMPLE_RATE // 2, dtype=np.int16)
    return np.concatenate([lead, resample(raw, rate, SAMPLE_RATE), lead])


def speech(tmp_path_factory: pytest.TempPathFactory) -> Pcm:
    """About 7 s of espeak-ng speech at 48 kHz (made once per session)."""
    return _speech(str(tmp_path_factory.getbasetemp()))


@dataclass
class RelayedCall:
    """A -> relay -> B with A playing a clip and B recording it."""

    a: PeerConnection
    b: PeerConnection
    relay: UdpRelay
    source: TimedSource
    heard: TimedSink


@asynccontextmanager
async def relayed_call(clip: Pcm, **options: Any) -> AsyncIterator[RelayedCall]:
    """Two PeerConnections (``options`` for both) with a :class:`UdpRelay` in between."""
    a, b = PeerConnection(**options), PeerConnection(**options)
    relay = UdpRelay()
    call = RelayedCall(a, b, relay, TimedSource(clip), TimedSink())
    b.set_remote_sink(call.heard)
    try:
        offer = relay.from_a(await a.create_offer(call.source))
        answer = relay.from_b(await b.create_answer(offer, None))
        await a.apply_answer(answer)
        await eventually(
            lambda: a.connection_state == b.connection_state == "connected", timeout=20
        )
        yield call
    finally:
        await a.close()
        await b.close()
        relay.close()
