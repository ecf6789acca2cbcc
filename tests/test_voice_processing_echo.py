"""Echo cancellation with WebRTC's APM: a simulated echo path, then real calls through a room.

The simulated path (``benchmarks.voice``): espeak-ng speech played, heard
after a bulk delay through a room-like impulse response with a coupling loss,
plus a little background noise, processed 20 ms at a time by the same pieces
a Device uses. The echo must come out at least 25 dB down (ERLE, far-end
single talk, after 2 s of convergence).

The calls: alice's speaker and microphone are a simulated :class:`Room` that
behaves like a sound card on the event loop's clock (the speaker has a
playout buffer and the microphone a capture queue, both reported; the room
adds an unreported acoustic delay and reverberation). Bob talks; what bob
hears back from alice is his own speech's echo, measured against what
alice's microphone picked up. Not ``pure``: livekit's native runtime starts
threads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from calltools import Listener
from recorders import eventually

from benchmarks.voice import (
    AEC_ONLY,
    DEFAULT,
    FAR_LEVEL_DBFS,
    FAR_TEXT,
    EchoPath,
    at_level,
    energy_db,
    erle_db,
    espeak,
    room_ir,
    simulate,
    white_noise,
)
from softphone.audio_backends import MemorySource
from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, AudioSource, Pcm
from softphone.audio_backends.memory import PcmFifo
from softphone.core.device import Device
from softphone.core.output_mixer import OutputMixer
from softphone.core.voice_processor import (
    VOICE_PROCESSING_PLUGIN,
    VoiceProcessedStream,
    VoiceProcessing,
)
from softphone.media.voice_processing import PROCESSING_KEYS, VoiceSettings
from softphone.plugins import hookimpl

pytest.importorskip("livekit", reason="voice processing needs the voice extra")

DeviceFactory = Callable[..., Device]
GOAL_DB = 25.0
CONVERGE_S = 7.0
"""Bob talks this long before the echo is measured (the canceller's first seconds
leak up to 25 dB, and quieter stretches of speech read lower)."""
MEASURE_S = 5.0


@functools.cache
def far_speech() -> npt.NDArray[np.float64]:
    """The far end's speech at its playing level (espeak-ng, about 10 s)."""
    return at_level(espeak(FAR_TEXT), FAR_LEVEL_DBFS)


def engine(settings: VoiceSettings) -> Any:
    from softphone.media.webrtc_apm import WebRtcApm

    return WebRtcApm(settings)


# -- the simulated echo path -------------------------------------------------------------
@pytest.mark.parametrize(
    ("delay_ms", "coupling_db", "settings"),
    [(50, 20.0, AEC_ONLY), (120, 15.0, DEFAULT), (200, 10.0, AEC_ONLY), (200, 10.0, DEFAULT)],
)
def test_echo_on_a_simulated_path_comes_out_25_db_down(
    delay_ms: int, coupling_db: float, settings: VoiceSettings
) -> None:
    far = np.concatenate([np.zeros(SAMPLE_RATE // 2), far_speech()])
    quiet = np.zeros(len(far))
    noise = white_noise(len(far), -75.0)
    path = EchoPath(delay_ms / 1000, coupling_db, room_ir())
    off = simulate(far, quiet, noise, path, None)
    assert erle_db(off.mic, off.out, 2.0, len(far) / SAMPLE_RATE) == pytest.approx(0.0, abs=0.1)
    run = simulate(far, quiet, noise, path, engine(settings))
    erle = erle_db(run.mic, run.out, 2.0, len(far) / SAMPLE_RATE)
    assert erle >= GOAL_DB, f"ERLE {erle:.1f} dB"


@pytest.mark.parametrize("settings", [AEC_ONLY, DEFAULT])
def test_near_end_speech_survives_the_processing(settings: VoiceSettings) -> None:
    """Near-end single talk goes through: not suppressed as echo (the gain control may
    raise it towards its target level)."""
    near = at_level(espeak("Kick the ball straight and follow through.", "en+f3"), -26.0)
    quiet = np.zeros(len(near))
    path = EchoPath(0.1, 15, room_ir())
    run = simulate(quiet, near, white_noise(len(near), -75.0), path, engine(settings))
    assert energy_db(run.out) > energy_db(run.mic) - 3.0


# -- a room for real calls ---------------------------------------------------------------
class Room:
    """A speaker and a microphone in one room, on the event loop's clock like hardware.

    Time passes on ``clock`` (the running loop's by default): at each access
    the room plays what the elapsed time allows from the speaker's queue,
    which behaves like ``PortAudioSink``'s: it starts once ``prebuffer_ms``
    is queued, and when it runs dry it plays what is left, then silence, and
    waits for that margin again. The room captures the same stretch through
    ``path`` (overlap-add FFT convolution) plus noise at -75 dBFS into the
    microphone's queue. The speaker reports its playout delay and the
    microphone its capture delay, as sound cards do; the path's own delay is
    not reported (the canceller and the delay estimator find it).
    """

    CHUNK = 2048

    def __init__(
        self, path: EchoPath, prebuffer_ms: int = 60, clock: Callable[[], float] | None = None
    ) -> None:
        silence = np.zeros(round(path.delay_s * SAMPLE_RATE))
        h = np.concatenate([silence, path.ir]) * 10 ** (-path.coupling_db / 20)
        self._size = 1 << (self.CHUNK + len(h) - 2).bit_length()
        self._spectrum = np.fft.rfft(h, self._size)
        self._tail = np.zeros(len(h) - 1)
        self._speaker = PcmFifo()
        self._mic = PcmFifo()
        self._prebuffer = SAMPLE_RATE * prebuffer_ms // 1000
        self._playing = False
        self._rng = np.random.default_rng(5)
        self._start: float | None = None
        self._elapsed = 0
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self.captured: list[Pcm] = []
        self.speaker = _Speaker(self)
        self.mic = _Mic(self)

    def advance(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        due = round((now - self._start) * SAMPLE_RATE) - self._elapsed
        while due > 0:
            chunk = min(due, self.CHUNK)
            self._run(chunk)
            due -= chunk
            self._elapsed += chunk

    def _run(self, samples: int) -> None:
        if not self._playing and len(self._speaker) >= self._prebuffer:
            self._playing = True
        if not self._playing:
            played = np.zeros(samples, np.int16)
        else:
            # An underrun plays what is left, then silence, and waits for the margin again
            # (as PortAudioSink does): audio already queued is never held back.
            self._playing = len(self._speaker) >= samples
            played = self._speaker.pop(samples)
        wet = np.fft.irfft(np.fft.rfft(played.astype(np.float64), self._size) * self._spectrum)
        wet = wet[: samples + len(self._tail)]
        wet[: len(self._tail)] += self._tail
        self._tail = wet[samples:].copy()
        noisy = wet[:samples] + self._rng.standard_normal(samples) * 32768 * 10 ** (-75 / 20)
        mic = np.clip(np.round(noisy), -32768, 32767).astype(np.int16)
        self.captured.append(mic)
        self._mic.push(mic)

    @property
    def playout_delay_s(self) -> float:
        self.advance()
        queued = len(self._speaker)
        return (queued if self._playing else max(queued, self._prebuffer)) / SAMPLE_RATE

    @property
    def capture_delay_s(self) -> float:
        self.advance()
        return len(self._mic) / SAMPLE_RATE

    def play(self, pcm: Pcm) -> None:
        self.advance()
        self._speaker.push(np.asarray(pcm, dtype=np.int16).copy())

    def capture(self, samples: int) -> Pcm:
        self.advance()
        return self._mic.pop(samples)

    def last_captured(self, seconds: float) -> Pcm:
        joined = np.concatenate(self.captured) if self.captured else np.zeros(0, np.int16)
        return joined[-int(seconds * SAMPLE_RATE) :]


class _Speaker:
    def __init__(self, room: Room) -> None:
        self.room = room

    @property
    def playout_delay_s(self) -> float:
        return self.room.playout_delay_s

    def write(self, pcm: Pcm) -> None:
        self.room.play(pcm)

    def close(self) -> None:
        pass


class _Mic:
    def __init__(self, room: Room) -> None:
        self.room = room

    @property
    def capture_delay_s(self) -> float:
        return self.room.capture_delay_s

    def read(self, samples: int) -> Pcm:
        return self.room.capture(samples)

    def close(self) -> None:
        pass


class SimulatedClock:
    """Loop time that a test moves by hand (the room, the mixer and the processing share it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _late_loop_erle(settings: VoiceSettings, seconds: float) -> tuple[list[float], list[int]]:
    """The far end's speech through a :class:`Room` on simulated time, with a late loop.

    The call's audio reaches alice's output mixer late and in bursts from 4 to
    6 s (network jitter up to 150 ms, as from a loaded machine), and the loop
    stalls for 30-150 ms now and then: the speaker runs dry, plays silence and
    restarts many times. Returns the ERLE of every second (microphone over
    processed energy) and the reference's lead at every second.
    """
    clock = SimulatedClock()
    rng = np.random.default_rng(7)
    room = Room(EchoPath(0.04, 10.0, room_ir(length_s=0.12)), clock=clock)
    voice = VoiceProcessing(engine_factory=engine, clock=clock)
    mixer = OutputMixer(room.speaker)
    mixer.taps.append(voice.output_tap())
    voice.bind(room.mic, {name: getattr(settings, name) for name in PROCESSING_KEYS})
    stream = voice.create_processed_stream(room.mic)
    feed = mixer.input()
    speech = np.clip(far_speech(), -32768, 32767).astype(np.int16)
    frames = int(seconds * 50)
    far = np.resize(speech, frames * FRAME_SAMPLES)
    arrival = np.arange(frames) * 0.02
    late = (arrival >= 4.0) & (arrival < 6.0)
    arrival[late] += rng.uniform(0, 0.15, int(late.sum()))
    arrival = np.maximum.accumulate(arrival)  # in order, as the jitter buffer hands them on
    stalls = {
        round(float(at), 3): float(rng.uniform(0.03, 0.15)) for at in np.arange(2.1, seconds, 1.3)
    }
    out: list[Pcm] = []
    leads: list[int] = []
    sent = ticks = reads = 0
    ms = 0
    while ms < seconds * 1000:
        clock.now = ms / 1000
        stall = stalls.get(clock.now)
        if stall is not None:  # nothing runs for a while, then everything catches up
            ms += round(stall * 1000)
            continue
        while sent < frames and arrival[sent] <= clock.now:
            feed.write(far[sent * FRAME_SAMPLES : (sent + 1) * FRAME_SAMPLES])
            sent += 1
        while ticks * 0.02 <= clock.now:  # the mixer's clock, catching up after a stall
            frame = mixer.mix_once()
            if frame is not None:
                mixer.play(frame, clock.now)
            ticks += 1
        while 0.007 + reads * 0.02 <= clock.now:  # the microphone's, 7 ms later
            out.append(stream.read(FRAME_SAMPLES))
            reads += 1
            if reads % 50 == 0:
                leads.append(stream.lead_ms)
        ms += 1
    voice.close()
    mic = room.last_captured(seconds)  # everything: the stream read it all, in order
    processed = np.concatenate(out)
    n = min(len(mic), len(processed))
    erle = [
        energy_db(mic[i : i + SAMPLE_RATE]) - energy_db(processed[i : i + SAMPLE_RATE])
        for i in range(0, n - SAMPLE_RATE + 1, SAMPLE_RATE)
    ]
    return erle, leads


@pytest.mark.parametrize("settings", [AEC_ONLY, DEFAULT])
def test_the_canceller_holds_on_when_the_speaker_runs_dry(settings: VoiceSettings) -> None:
    """A late loop or late call audio makes a real sound card run dry and restart: the
    reference must restart with it (not run on as if nothing was lost), and the lead
    must not follow the starved stretch, or the canceller loses the echo for seconds."""
    erle, leads = _late_loop_erle(settings, 12.0)
    settled = erle[7:]  # from a second after the starved stretch
    assert min(settled) >= GOAL_DB, f"ERLE per second {[round(e, 1) for e in erle]}"
    assert leads[3:] == [leads[3]] * len(leads[3:]), f"the lead moved: {leads}"


async def _bob_talks(make_device: DeviceFactory) -> Listener:
    speech = np.clip(far_speech(), -32768, 32767).astype(np.int16)
    bob = Listener(make_device("bob", file_input_stream=MemorySource(speech, loop=True)))
    await bob.device.register()
    return bob


async def _echo_db(room: Room, bob: Listener, seconds: float) -> float:
    """How far below what alice's microphone picked up bob hears his echo, over the
    next ``seconds``: the median of 1 s windows (a loop stall on this shared machine
    can make the room glitch, as a sound card would, and the canceller re-converge)."""
    start = bob.heard.samples_written
    await eventually(lambda: bob.heard.samples_written - start >= seconds * SAMPLE_RATE, 15)
    heard = bob.heard.pcm()[-int(seconds * SAMPLE_RATE) :]
    captured = room.last_captured(seconds)
    return float(
        np.median(
            [
                energy_db(captured[i : i + SAMPLE_RATE]) - energy_db(heard[i : i + SAMPLE_RATE])
                for i in range(0, len(heard) - SAMPLE_RATE + 1, SAMPLE_RATE)
            ]
        )
    )


async def _call(alice: Device, bob: Listener, audio: dict[str, Any] | None = None) -> Any:
    constraints = {"audio": audio} if audio is not None else None
    before = len(bob.calls)
    call = await alice.connect(params={"To": "client:bob"}, rtc_constraints=constraints)
    await call.wait_for("accept", timeout=15)
    await bob.wait_call(before + 1)
    return call


async def test_constraints_switch_voice_processing_mid_call(make_device: DeviceFactory) -> None:
    room = Room(EchoPath(0.04, 10.0, room_ir(length_s=0.12)))
    bob = await _bob_talks(make_device)
    alice = make_device("alice", speaker=room.speaker, getUserMedia=lambda c: room.mic)
    assert alice.audio is not None
    voice = alice.audio.voice_processing
    call = await _call(alice, bob)
    await asyncio.sleep(CONVERGE_S)  # the canceller converges while bob talks
    (stream,) = voice.streams
    assert stream.real_device and stream.active and stream.settings == DEFAULT  # on by default
    on = await _echo_db(room, bob, MEASURE_S)
    assert on >= GOAL_DB, f"echo only {on:.1f} dB down with processing on"

    off = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
    await alice.audio.set_audio_constraints(off)
    assert voice.streams == [stream] and not stream.active  # in place, same input
    await asyncio.sleep(0.5)
    echo = await _echo_db(room, bob, 2.0)
    assert echo < 6.0, f"echo {echo:.1f} dB down with processing off"

    await alice.audio.set_audio_constraints({"echo_cancellation": True})
    assert stream.active and stream.settings == DEFAULT  # the others back to their default
    await asyncio.sleep(CONVERGE_S)  # a new engine: it converges again
    again = await _echo_db(room, bob, MEASURE_S)
    assert again >= GOAL_DB, f"echo only {again:.1f} dB down after switching back on"
    assert call.status() == "open" and alice.active_call is call
    call.disconnect()


class Halver:
    """An app's processor plugin: halves the microphone, records what it was given."""

    def __init__(self) -> None:
        self.inputs: list[AudioSource] = []

    @hookimpl
    def softphone_audio_processor(self, is_remote: bool) -> Any:
        return None if is_remote else self

    def create_processed_stream(self, stream: AudioSource) -> AudioSource:
        self.inputs.append(stream)

        class Half:
            def read(self, samples: int) -> Pcm:
                return (np.asarray(stream.read(samples), dtype=np.int16) // 2).astype(np.int16)

            def close(self) -> None:
                pass

        return Half()

    def destroy_processed_stream(self, stream: AudioSource) -> None:
        pass


async def test_an_app_processor_plugin_chains_after_or_replaces_the_default(
    make_device: DeviceFactory,
) -> None:
    room = Room(EchoPath(0.04, 10.0, room_ir(length_s=0.12)))
    bob = await _bob_talks(make_device)
    alice = make_device("alice", speaker=room.speaker, getUserMedia=lambda c: room.mic)
    assert alice.audio is not None
    halver = Halver()
    alice.plugins.register(halver)

    # chained: the app's processor gets the echo-cancelled microphone
    call = await _call(alice, bob)
    await asyncio.sleep(CONVERGE_S)
    assert isinstance(halver.inputs[-1], VoiceProcessedStream)
    chained = await _echo_db(room, bob, MEASURE_S)
    assert chained >= GOAL_DB
    call.disconnect()
    await eventually(lambda: alice.active_call is None and not bob.device.is_busy)

    # replaced: the built-in is blocked, the app's processor reads the microphone itself
    alice.plugins.set_blocked(VOICE_PROCESSING_PLUGIN)
    call = await _call(alice, bob)
    await asyncio.sleep(2.0)
    latest: object = halver.inputs[-1]
    assert latest is room.mic
    assert alice.audio.voice_processing.streams == []
    replaced = await _echo_db(room, bob, 3.0)
    assert 4.0 < replaced < 9.0, f"{replaced:.1f} dB: the halving alone (6 dB), no cancellation"
    call.disconnect()
