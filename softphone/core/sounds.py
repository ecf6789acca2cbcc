"""The Device's sounds: ringtone, outgoing, disconnect and DTMF feedback.

The JS SDK fetches MP3s from a CDN; we synthesise equivalents (no network), or
play the files named in the ``sounds`` option through any format av reads.
Sounds are written in real time, 20 ms at a time, to the Device's speaker
devices (the ringtone to the ringtone devices), so a file or memory sink
records them as a person would hear them. Each playback has its own output
route, so overlapping sounds (and the call) are mixed, never interleaved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm

if TYPE_CHECKING:
    from softphone.core.audio_streams import OutputRoute

log = logging.getLogger("softphone.sounds")

MAX_DURATION_MS = {"outgoing": 3000, "disconnect": 3000}
DTMF_MAX_MS = 1000
LEAD_FRAMES = 6
"""Frames a playback is written ahead of real time: 120 ms of cushion for the mixer,
so a busy event loop stalling this writer for a while leaves no silent frame inside a
sound (40 ms was not always enough under load). It must stay below the mixer input's
200 ms backlog, past which queued audio is dropped. A stopped or restarted sound
loses what it had queued at once, so the lead delays nothing."""
LOOPING = frozenset({"incoming"})

# The JS DialtonePlayer's deliberately non-standard "mock" pairs, so that local
# feedback tones are never mistaken for real DTMF by anything that hears them.
MOCK_DTMF_HZ = {
    "1": (1230, 720),
    "2": (1360, 720),
    "3": (1480, 720),
    "4": (1230, 790),
    "5": (1360, 790),
    "6": (1480, 790),
    "7": (1230, 870),
    "8": (1360, 870),
    "9": (1480, 870),
    "s": (1230, 960),
    "0": (1360, 960),
    "h": (1480, 960),
}


def _tone(freqs: tuple[float, ...], ms: int, gain: float) -> Pcm:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / max(1, len(freqs))
    ramp = min(len(t) // 2, SAMPLE_RATE // 200)  # 5 ms fades: no clicks
    envelope = np.ones_like(t)
    if ramp:
        envelope[:ramp] = np.linspace(0, 1, ramp)
        envelope[-ramp:] = np.linspace(1, 0, ramp)
    return (wave * envelope * gain * 32767).astype(np.int16)


def _gap(ms: int) -> Pcm:
    return np.zeros(SAMPLE_RATE * ms // 1000, dtype=np.int16)


def default_sound(name: str) -> Pcm:
    """The synthesised default for sound ``name`` (one period for looping sounds)."""
    if name == "incoming":  # North-American ringing: 440+480 Hz, 2 s on, 4 s off
        return np.concatenate([_tone((440, 480), 2000, 0.25), _gap(4000)])
    if name == "outgoing":
        return np.concatenate([_tone((880,), 120, 0.2), _gap(40), _tone((1320,), 160, 0.2)])
    if name == "disconnect":
        return np.concatenate(
            [np.concatenate([_tone((f,), 120, 0.2), _gap(60)]) for f in (988, 784, 659)]
        )
    if name.startswith("dtmf"):
        return _tone(MOCK_DTMF_HZ[name[4:]], 100, 0.1)
    raise KeyError(name)


class SoundOutputs(Protocol):
    """What the sounds need from ``device.audio``: the sound flags and the two routes."""

    def incoming(self) -> bool:
        """Whether the ringtone plays."""

    def outgoing(self) -> bool:
        """Whether the outgoing sound plays."""

    def disconnect(self) -> bool:
        """Whether the disconnect sound plays."""

    def ringtone_sink(self) -> OutputRoute:
        """A fresh route to the ringtone devices."""

    def speaker_sink(self) -> OutputRoute:
        """A fresh route to the speaker devices."""


class RingingCall(Protocol):
    """A call as the ringtone sees it: only whether it is still pending."""

    def status(self) -> str:
        """The call's ``Call.State``."""


class SoundBoard:
    """Plays the Device's sounds; one playback task per sound name at a time.

    ``audio`` returns ``device.audio`` (None once destroyed); ``pending_calls``
    returns the calls that may still be ringing.
    """

    def __init__(
        self,
        audio: Callable[[], SoundOutputs | None],
        pending_calls: Callable[[], Iterable[RingingCall]],
    ) -> None:
        self._audio = audio
        self._pending_calls = pending_calls
        self._custom: dict[str, str] = {}
        self._cache: dict[str, Pcm] = {}
        self._playing: dict[str, asyncio.Task[None]] = {}
        self._routes: dict[str, OutputRoute] = {}
        """The route of each sound's last playback, which may still be draining."""
        self._ringing_for: set[int] = set()
        self.played: list[str] = []
        """Names of the sounds started, in order (for apps and tests to inspect)."""

    def configure(self, sounds: Mapping[str, str]) -> None:
        """Use the given files instead of the synthesised defaults."""
        self._custom = dict(sounds)
        self._cache.clear()

    def pcm(self, name: str) -> Pcm:
        """The samples of sound ``name`` (custom file if configured, else the default)."""
        if name not in self._cache:
            path = self._custom.get(name)
            self._cache[name] = _read_file(path) if path else default_sound(name)
        return self._cache[name]

    def _enabled(self, name: str) -> bool:
        audio = self._audio()
        if audio is None:
            return False
        flags = {
            "incoming": audio.incoming,
            "outgoing": audio.outgoing,
            "disconnect": audio.disconnect,
        }
        return flags[name]() if name in flags else True

    def _open_route(self, name: str) -> OutputRoute | None:
        """A fresh output route for one playback of ``name`` (None without audio)."""
        audio = self._audio()
        if audio is None:
            return None
        return audio.ringtone_sink() if name == "incoming" else audio.speaker_sink()

    def play(self, name: str) -> None:
        """Start sound ``name`` if enabled (restarting it if it was already playing)."""
        if not self._enabled(name) or self._audio() is None:
            return
        self.stop(name)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.played.append(name)
        limit = DTMF_MAX_MS if name.startswith("dtmf") else MAX_DURATION_MS.get(name)
        self._playing[name] = loop.create_task(
            self._run(name, loop=name in LOOPING, limit_ms=limit)
        )

    def stop(self, name: str) -> None:
        """Stop sound ``name`` if it is playing (including what it still had queued)."""
        task = self._playing.pop(name, None)
        if task is not None:
            task.cancel()
        route = self._routes.pop(name, None)
        if route is not None:
            route.close()

    def is_playing(self, name: str) -> bool:
        """Whether sound ``name`` is playing now."""
        task = self._playing.get(name)
        return task is not None and not task.done()

    def start_ringing(self) -> None:
        """Start the looping ringtone unless it is already on."""
        if not self.is_playing("incoming"):
            self.play("incoming")

    def stop_ringing(self) -> None:
        """Stop the ringtone."""
        self.stop("incoming")

    def stop_ringing_for(self, call: object) -> None:
        """A pending call stopped ringing: stop the tone when no pending call is left."""
        if not any(c.status() == "pending" for c in self._pending_calls() if c is not call):
            self.stop_ringing()

    def stop_all(self) -> None:
        """Stop every sound (``destroy``)."""
        for name in {*self._playing, *self._routes}:
            self.stop(name)

    async def _run(self, name: str, *, loop: bool, limit_ms: int | None) -> None:
        """Write ``name`` frame by frame on the loop's clock through a route of its own.

        The writer stays :data:`LEAD_FRAMES` ahead of the clock: the route's mixer
        has its own 20 ms clock, and a writer exactly in step with it would, under
        load, miss a tick now and then and leave a silent frame inside the sound.
        The route is opened here and closed when the playback ends: drained
        when the sound played to its end, at once when it was stopped.
        """
        pcm = self.pcm(name)
        sink = self._open_route(name) if len(pcm) else None
        if sink is not None:
            self._routes[name] = sink
        if sink is None:
            if self._playing.get(name) is asyncio.current_task():
                del self._playing[name]
            return
        clock = asyncio.get_running_loop()
        start = clock.time()
        max_frames = None if limit_ms is None else limit_ms // 20
        position = 0
        frame_index = 0
        finished = False
        try:
            while max_frames is None or frame_index < max_frames:
                if position >= len(pcm):
                    if not loop:
                        break
                    position = 0
                chunk = pcm[position : position + FRAME_SAMPLES]
                position += FRAME_SAMPLES
                if len(chunk) < FRAME_SAMPLES:
                    chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
                sink.write(chunk)
                frame_index += 1
                delay = start + (frame_index - LEAD_FRAMES) * 0.02 - clock.time()
                await asyncio.sleep(max(0.0, delay))
            finished = True
        finally:
            sink.close(drain=finished)
            if self._playing.get(name) is asyncio.current_task():
                del self._playing[name]


def _read_file(path: str) -> Pcm:
    from softphone.audio_backends.file import FileSource

    source = FileSource(path)
    chunks = []
    try:
        for _ in range(60 * 50):  # at most 60 s of sound
            block = source.read(FRAME_SAMPLES)
            if source.finished and not np.any(block):
                break
            chunks.append(block)
    finally:
        source.close()
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
