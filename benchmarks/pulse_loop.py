"""A real speaker-to-microphone loop: a private PulseAudio daemon, through PortAudio.

:func:`pulse_loop` starts ``pulseaudio`` with one null sink, ``spk``, as the
default sink, and its monitor as the default source: whatever the SDK plays
on PortAudio's default output comes back on PortAudio's default input, after
the real device buffering of PortAudio, ALSA's pulse plugin and the daemon.
Other null sinks and another default source can be asked for (the PortAudio
call test plays its "microphone" into a second sink). The daemon lives in a
temporary directory and is stopped by PID.

:func:`measure` plays speech through an :class:`OutputMixer` on a
``PortAudioSink`` and reads a ``PortAudioSource`` through the built-in voice
processing, as a Device does, and returns the ERLE of one run. Used by the
``voice`` benchmark and the loop test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from softphone.audio_backends import portaudio
from softphone.audio_backends.analysis import align_offset
from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from softphone.core.output_mixer import OutputMixer
from softphone.core.voice_processor import VoiceProcessing

TOOLS = ("pulseaudio", "pactl")
INSTALL = (
    "apt-get install -y --no-install-recommends pulseaudio pulseaudio-utils "
    "libasound2-plugins libportaudio2; pip install sounddevice"
)
_ENV_KEYS = ("HOME", "PULSE_RUNTIME_PATH", "XDG_RUNTIME_DIR", "PULSE_SERVER")
SKIP_S = 4.0
"""Left out of the loop's ERLE: the canceller's convergence (AEC3 starts conservative)."""


class PulseUnavailableError(RuntimeError):
    """PulseAudio, ALSA's pulse plugin or PortAudio is missing, or the daemon did not start."""


def missing() -> str | None:
    """What is missing for the loop here (with the install line), or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"PulseAudio is not installed ({', '.join(absent)} missing): {INSTALL}"
    if not portaudio.is_available():
        return f"PortAudio (sounddevice + libportaudio2) is not available: {INSTALL}"
    if not list(Path("/usr/share/alsa/alsa.conf.d").glob("*pulse*")):
        return f"ALSA's pulse plugin (libasound2-plugins) is not installed: {INSTALL}"
    return None


@contextmanager
def pulse_loop(
    set_env: Callable[[str, str], None] | None = None,
    *,
    sinks: Sequence[str] = ("spk",),
    source: str = "spk.monitor",
) -> Iterator[dict[str, str]]:
    """Run the daemon; yields its environment (for ``pactl``, ``paplay``, ``parec``).

    ``sinks``: the null sinks to create, the first one the default sink;
    ``source``: the default source (the first sink's monitor: the loop).
    ``set_env(key, value)`` points this process at it (default:
    ``os.environ``, restored afterwards; tests pass ``monkeypatch.setenv``).
    Raises :class:`PulseUnavailableError` if it cannot run here.
    """
    problem = missing()
    if problem:
        raise PulseUnavailableError(problem)
    with tempfile.TemporaryDirectory(prefix="softphone-pulse-") as tmp:
        runtime = Path(tmp) / "run"
        runtime.mkdir()
        env = {
            **os.environ,
            "HOME": tmp,
            "PULSE_RUNTIME_PATH": str(runtime),
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_SERVER": f"unix:{runtime}/native",
        }
        daemon = subprocess.Popen(
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
                "--log-target=stderr", "--log-level=error",
                "--load=module-native-protocol-unix",
                *(f"--load=module-null-sink sink_name={sink}" for sink in sinks),
            ],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        saved = {key: os.environ.get(key) for key in _ENV_KEYS}
        try:
            _wait_ready(daemon, env)
            for args in (("set-default-sink", sinks[0]), ("set-default-source", source)):
                _pactl(env, *args)
            for key in _ENV_KEYS:
                (set_env or os.environ.__setitem__)(key, env[key])
            if not portaudio.rescan():  # a leak, not a missing tool: fail, do not skip
                raise RuntimeError("a PortAudio stream is still open: cannot rescan devices")
            yield env
        finally:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            if set_env is None:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            portaudio.rescan()


def _pactl(env: Mapping[str, str], *args: str) -> str:
    return subprocess.run(
        ["pactl", *args], env=dict(env), capture_output=True, text=True, check=True, timeout=10
    ).stdout


def _wait_ready(daemon: subprocess.Popen[bytes], env: Mapping[str, str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            _pactl(env, "info")
            return
        except subprocess.CalledProcessError as exc:
            if daemon.poll() is not None or time.monotonic() > deadline:
                err = daemon.stderr.read().decode() if daemon.stderr else ""
                raise PulseUnavailableError(
                    f"PulseAudio did not start: {err.strip()[:300]}"
                ) from exc
            time.sleep(0.1)


class RecordingSource:
    """A source that keeps what it reads (the raw microphone), timing included."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.blocks: list[Pcm] = []

    @property
    def capture_delay_s(self) -> float:
        """The wrapped source's capture delay."""
        return float(self.source.capture_delay_s)

    def read(self, samples: int) -> Pcm:
        pcm: Pcm = np.asarray(self.source.read(samples), dtype=np.int16)
        self.blocks.append(pcm)
        return pcm

    def close(self) -> None:
        self.source.close()

    def pcm(self) -> Pcm:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)


@dataclass
class LoopRun:
    """One run of speech through the loop."""

    played: Pcm
    mic: Pcm
    out: Pcm
    lead_ms: int
    active: bool

    def erle_db(self, skip_s: float) -> float:
        """Microphone over processed energy after ``skip_s`` (convergence left out)."""
        start = int(skip_s * SAMPLE_RATE)
        return _energy_db(self.mic[start:]) - _energy_db(self.out[start:])

    def median_erle_db(self, skip_s: float) -> float:
        """The median of the ERLE over 1 s windows after ``skip_s``."""
        start = int(skip_s * SAMPLE_RATE)
        values = [
            _energy_db(self.mic[i : i + SAMPLE_RATE]) - _energy_db(self.out[i : i + SAMPLE_RATE])
            for i in range(start, len(self.out) - SAMPLE_RATE + 1, SAMPLE_RATE)
        ]
        return float(np.median(values)) if values else 0.0

    def loop_delay_ms(self) -> float:
        """Speaker to microphone, from the cross-correlation of played and captured audio."""
        lag = align_offset(self.played, self.mic, max_lag_s=1.5)
        return lag * 1000 / SAMPLE_RATE


def _energy_db(x: npt.ArrayLike) -> float:
    e = float(np.sum(np.asarray(x, dtype=np.float64) ** 2))
    return 10 * float(np.log10(max(e, 1e-9)))


async def measure(far: Pcm, audio: Mapping[str, Any] | None) -> LoopRun:
    """Play ``far`` on the default output, capture the default input through voice
    processing set by the JS audio constraints ``audio`` (None: a real device's
    defaults), 20 ms at a time, as a call would."""
    voice = VoiceProcessing()
    sink = portaudio.PortAudioSink()
    mic = RecordingSource(portaudio.PortAudioSource())
    mixer = OutputMixer(sink)
    mixer.taps.append(voice.output_tap())
    voice.bind(mic, audio)
    stream = voice.create_processed_stream(mic)
    feed = mixer.input()
    out: list[Pcm] = []
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        frames = len(far) // FRAME_SAMPLES
        for tick in range(frames):
            feed.write(far[tick * FRAME_SAMPLES : (tick + 1) * FRAME_SAMPLES])
            out.append(stream.read(FRAME_SAMPLES))
            await asyncio.sleep(
                max(0.0, start + (tick + 1) * FRAME_SAMPLES / SAMPLE_RATE - loop.time())
            )
        lead, active = stream.lead_ms, stream.active
    finally:
        voice.destroy_processed_stream(stream)
        mixer.close()
        mic.close()
        sink.close()
    n = min(len(far), sum(len(o) for o in out))
    return LoopRun(far[:n].copy(), mic.pcm()[:n], np.concatenate(out)[:n], lead, active)


async def report(far_speech: npt.ArrayLike, progress: Callable[[str], None]) -> list[str]:
    """The loop's ERLE with processing off, echo cancellation alone, and a device's defaults
    (the speech twice, about 20 s per run; the first :data:`SKIP_S` left out)."""
    speech = np.clip(np.asarray(far_speech, dtype=np.float64), -32768, 32767).astype(np.int16)
    far = np.concatenate([np.zeros(SAMPLE_RATE // 2, dtype=np.int16), speech, speech])
    title = "Real device path: PulseAudio null sink -> its monitor -> PortAudio input"
    off = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
    aec = {"echoCancellation": True, "noiseSuppression": False, "autoGainControl": False}
    try:
        with pulse_loop():
            rows = []
            for name, audio in (("off", off), ("AEC", aec), ("AEC+NS+AGC (default)", None)):
                progress(f"voice: PulseAudio loop, processing {name}")
                run = await measure(far, audio)
                rows.append(
                    f"{name:21} {run.erle_db(SKIP_S):6.1f} dB {run.median_erle_db(SKIP_S):8.1f} dB "
                    f"{run.loop_delay_ms():7.0f} ms {run.lead_ms:6d} ms"
                )
    except PulseUnavailableError as exc:
        return [title, f"skipped: {exc}"]
    header = "processing              ERLE  median/1s  loop delay   lead"
    return [
        f"{title} (a private daemon; ERLE after {SKIP_S:.0f} s of far-end single talk, and its",
        "median over 1 s windows; loop delay: speaker to microphone, measured; lead: reference",
        "over capture)",
        header,
        "-" * len(header),
        *rows,
    ]
