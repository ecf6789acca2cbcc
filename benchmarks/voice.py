"""Voice processing on the capture path: echo cancellation, double talk, noise, CPU.

``python -m benchmarks --sections voice``. A simulated echo path first: the
far end's speech (espeak-ng) is played, heard after a bulk delay (output
buffers, 50-200 ms), through a room-like impulse response (exponentially
decaying reverberation, RT60 0.3 s) and 10-20 dB of speaker-to-microphone
coupling loss, plus the near end's own speech (another voice) and background
noise. The microphone is processed by the same pieces a Device uses
(:class:`~softphone.media.voice_processing.CaptureProcessor` over the
:class:`~softphone.media.voice_processing.FarEnd` fed like an output mixer
feeds it) with WebRTC's APM, driven by simulated time: 20 ms blocks.

Figures:

* ERLE (echo return loss enhancement): microphone energy over processed
  energy during far-end single talk (the first 2 s, convergence, left out);
  the goal is >= 25 dB (browsers reach 30+). "Far end hears" adds the
  coupling: how far below its own speech the far end hears its echo.
* near-end PESQ-WB during double talk, processing on vs off (reference: the
  near end's clean speech);
* noise suppression: SNR gain on speech in fan-like noise (hum at the blade
  rate and its harmonics over low-passed noise), SNR measured from the
  speech-active and speech-free stretches of the clean speech;
* CPU seconds per call-second of processing (this process, one core).

Then the same on a real device path: a private PulseAudio daemon whose null
sink's monitor is the default source, so what the speaker plays is what the
microphone captures, through PortAudio (:mod:`benchmarks.pulse_loop`).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.analysis import resample
from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from softphone.media.voice_processing import (
    CaptureProcessor,
    FarEnd,
    VoiceEngine,
    VoiceSettings,
    position,
)

Floats = npt.NDArray[np.float64]

FAR_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish."
)
NEAR_TEXT = (
    "A large size in stockings is hard to sell. The boy was there when the sun rose. "
    "Kick the ball straight and follow through."
)
FAR_LEVEL_DBFS = -22.0
"""RMS of the far end's speech as played (speech-active stretches)."""
NEAR_LEVEL_DBFS = -26.0
"""RMS of the near end's speech at the microphone."""
NOISE_DBFS = -65.0
"""Background noise at the microphone in the echo runs (a quiet room)."""
CONVERGENCE_S = 2.0
"""Left out of the ERLE: the canceller's first convergence."""

DEFAULT = VoiceSettings(echo_cancellation=True, noise_suppression=True, auto_gain_control=True)
AEC_ONLY = VoiceSettings(echo_cancellation=True)
OFF = VoiceSettings()


# -- signals -----------------------------------------------------------------------------
def espeak(text: str, voice: str = "en") -> Pcm:
    """``text`` spoken by espeak-ng ``voice``, at 48 kHz (RuntimeError without espeak-ng)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([binary, "-v", voice, "-s", "150", "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return resample(raw, rate, SAMPLE_RATE)


def at_level(signal: npt.ArrayLike, dbfs: float) -> Floats:
    """``signal`` scaled so its speech-active RMS is ``dbfs`` (float samples, int16 scale)."""
    x = np.asarray(signal, dtype=np.float64)
    active = x[_active_mask(x)]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
    if rms == 0:
        return x
    scaled: Floats = x * (32768 * 10 ** (dbfs / 20) / rms)
    return scaled


def _active_mask(x: Floats, frame: int = 480) -> npt.NDArray[np.bool_]:
    """Samples in 10 ms frames within 30 dB of the loudest frame."""
    n = len(x) // frame * frame
    energy = np.mean(x[:n].reshape(-1, frame) ** 2, axis=1)
    if not energy.size or energy.max() == 0:
        return np.zeros(len(x), dtype=bool)
    frames = energy > energy.max() * 1e-3
    mask = np.zeros(len(x), dtype=bool)
    mask[:n] = np.repeat(frames, frame)
    return mask


def room_ir(rt60_s: float = 0.3, length_s: float = 0.25, seed: int = 1) -> Floats:
    """A room-like impulse response of unit energy: a direct path, then decaying reverb."""
    rng = np.random.default_rng(seed)
    n = int(length_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s) * 0.3
    direct = int(0.002 * SAMPLE_RATE)  # 70 cm from speaker to microphone
    ir[:direct] = 0
    ir[direct] = 1.0
    normalized: Floats = ir / np.sqrt(np.sum(ir**2))
    return normalized


def white_noise(samples: int, dbfs: float, seed: int = 2) -> Floats:
    """Gaussian noise at ``dbfs`` RMS."""
    noise: Floats = np.random.default_rng(seed).standard_normal(samples) * 32768 * 10 ** (dbfs / 20)
    return noise


def fan_noise(samples: int, dbfs: float, seed: int = 3) -> Floats:
    """A fan: low-passed noise plus hum at the blade rate (120 Hz) and harmonics, wavering."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SAMPLE_RATE
    white = rng.standard_normal(samples)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(1 + (freqs / 400.0) ** 2)  # -6 dB/octave above 400 Hz
    rumble = np.fft.irfft(spectrum, samples)
    rumble /= np.sqrt(np.mean(rumble**2))
    wobble = 1 + 0.05 * np.sin(2 * np.pi * 0.7 * t)
    hum = sum(
        (0.5 / k) * np.sin(2 * np.pi * 120.0 * k * t * wobble + rng.uniform(0, 6.28))
        for k in range(1, 6)
    )
    fan = rumble + hum
    fan /= np.sqrt(np.mean(fan**2))
    scaled: Floats = fan * 32768 * 10 ** (dbfs / 20)
    return scaled


def to_pcm(x: npt.ArrayLike) -> Pcm:
    """Float samples (int16 scale) as clipped int16."""
    pcm: Pcm = np.clip(np.round(np.asarray(x, dtype=np.float64)), -32768, 32767).astype(np.int16)
    return pcm


# -- the simulated echo path -------------------------------------------------------------
def convolve(x: Floats, h: Floats) -> Floats:
    """Linear convolution through the FFT (a direct one takes seconds per run)."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    out: Floats = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
    return out


@dataclass(frozen=True)
class EchoPath:
    """Speaker to microphone: a bulk delay, an impulse response and a coupling loss."""

    delay_s: float
    coupling_db: float
    ir: Floats

    def echo(self, played: Floats) -> Floats:
        """What the microphone picks up of ``played`` (same length, time-aligned)."""
        wet = convolve(played, self.ir)[: len(played)] * 10 ** (-self.coupling_db / 20)
        shift = round(self.delay_s * SAMPLE_RATE)
        out: Floats = np.zeros(len(played))
        out[shift:] = wet[: len(played) - shift]
        return out


@dataclass
class Run:
    """One simulated run: the microphone, its parts, and the processed output."""

    mic: Pcm
    echo: Floats
    near: Floats
    out: Pcm
    cpu_s: float


def simulate(
    far: Floats,
    near: Floats,
    noise: Floats,
    path: EchoPath,
    engine: VoiceEngine | None,
    *,
    reported_delay_s: float = 0.0,
) -> Run:
    """Play ``far``, capture echo + ``near`` + ``noise`` and process it, 20 ms per tick.

    Each tick writes a far-end frame as an output mixer would (heard after the
    ``reported_delay_s`` the output says it has) and reads a microphone block
    (capture delay 0). ``path.delay_s`` is the real delay; the difference is
    left for the canceller to find.
    """
    n = min(len(far), len(near), len(noise)) // FRAME_SAMPLES * FRAME_SAMPLES
    echo = path.echo(far[:n])
    mic = to_pcm(echo + near[:n] + noise[:n])
    played = to_pcm(far[:n])
    far_end = FarEnd()
    track = far_end.track()
    processor = CaptureProcessor(far_end, engine)
    out = np.zeros(n, dtype=np.int16)
    cpu = 0.0
    for start in range(0, n, FRAME_SAMPLES):
        now = start / SAMPLE_RATE
        block = slice(start, start + FRAME_SAMPLES)
        track.push(played[block], position(now + reported_delay_s))
        began = time.process_time()
        out[block] = processor.process(mic[block], position(now))
        cpu += time.process_time() - began
    processor.close()
    return Run(mic, echo, near[:n], out, cpu)


def energy_db(x: npt.ArrayLike) -> float:
    """10 log10 of the energy of ``x`` (floats or PCM)."""
    e = float(np.sum(np.asarray(x, dtype=np.float64) ** 2))
    return 10 * math.log10(max(e, 1e-9))


def erle_db(mic: Pcm, out: Pcm, start_s: float, end_s: float) -> float:
    """Microphone over processed energy between ``start_s`` and ``end_s``."""
    span = slice(int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE))
    return energy_db(mic[span]) - energy_db(out[span])


def snr_db(signal: npt.ArrayLike, clean: Floats) -> float:
    """SNR of ``signal`` from where ``clean`` speaks and where it is silent."""
    x = np.asarray(signal, dtype=np.float64)[: len(clean)]
    active = _active_mask(clean)
    silent = np.zeros(len(clean), dtype=bool)
    frame = 480
    m = len(clean) // frame * frame
    frames = np.mean(clean[:m].reshape(-1, frame) ** 2, axis=1)
    silent[:m] = np.repeat(frames < frames.max() * 1e-6, frame)
    p_noise = float(np.mean(x[silent] ** 2))
    p_total = float(np.mean(x[active] ** 2))
    return 10 * math.log10(max(p_total - p_noise, 1e-9) / max(p_noise, 1e-9))


def pesq_wb(reference: Floats, degraded: npt.ArrayLike) -> float:
    """PESQ-WB of ``degraded`` against ``reference`` (same timing, 48 kHz)."""
    from pesq import pesq

    ref = resample(to_pcm(reference), SAMPLE_RATE, 16000)
    deg = resample(to_pcm(degraded), SAMPLE_RATE, 16000)
    n = min(len(ref), len(deg))
    return float(pesq(16000, ref[:n], deg[:n], "wb"))


# -- the benchmark -----------------------------------------------------------------------
@dataclass(frozen=True)
class Clips:
    """The far end's and the near end's speech, at their levels."""

    far: Floats
    near: Floats


def clips() -> Clips:
    """Two talkers: a male voice far away, a female voice in the room (espeak-ng)."""
    far = at_level(espeak(FAR_TEXT, "en"), FAR_LEVEL_DBFS)
    near = at_level(espeak(NEAR_TEXT, "en+f3"), NEAR_LEVEL_DBFS)
    return Clips(far, near)


def scenario(c: Clips) -> tuple[Floats, Floats, float]:
    """Far-end single talk, then double talk: (far, near, second where double talk starts)."""
    pad = np.zeros(SAMPLE_RATE // 2)
    far = np.concatenate([pad, c.far, c.far])
    near = np.zeros(len(far))
    start = len(pad) + len(c.far)
    near[start : start + len(c.near)] = c.near[: len(far) - start]
    return far, near, start / SAMPLE_RATE


def engine_factory() -> Callable[[VoiceSettings], VoiceEngine]:
    """WebRTC's APM (the ``voice`` extra)."""
    from softphone.media.webrtc_apm import WebRtcApm

    return WebRtcApm


@dataclass(frozen=True)
class EchoRow:
    """One echo-path condition."""

    delay_ms: int
    coupling_db: float
    reported_ms: int
    settings: str
    erle: float
    erle_quiet: float
    far_hears: float
    pesq_on: float
    pesq_off: float
    cpu: float


def echo_rows(c: Clips, conditions: list[tuple[int, float, int]]) -> Iterator[EchoRow]:
    """(delay ms, coupling dB, reported delay ms) -> ERLE, PESQ on/off, CPU per call-second."""
    make = engine_factory()
    far, near, double_from = scenario(c)
    noise = white_noise(len(far), NOISE_DBFS)
    quiet = np.zeros(len(far))
    for delay_ms, coupling, reported_ms in conditions:
        path = EchoPath(delay_ms / 1000, coupling, room_ir())
        off = simulate(far, near, noise, path, None)
        pesq_off = pesq_wb(near_part(off, double_from), off.mic[int(double_from * SAMPLE_RATE) :])
        for name, settings in (("AEC", AEC_ONLY), ("AEC+NS+AGC", DEFAULT)):
            run = simulate(
                far, near, noise, path, make(settings), reported_delay_s=reported_ms / 1000
            )
            erle = erle_db(run.mic, run.out, CONVERGENCE_S, double_from)
            alone = simulate(
                far, quiet, quiet, path, make(settings), reported_delay_s=reported_ms / 1000
            )
            erle_quiet = erle_db(alone.mic, alone.out, CONVERGENCE_S, double_from)
            span = slice(int(CONVERGENCE_S * SAMPLE_RATE), int(double_from * SAMPLE_RATE))
            far_hears = energy_db(far[span]) - energy_db(run.out[span])
            pesq_on = pesq_wb(
                near_part(run, double_from), run.out[int(double_from * SAMPLE_RATE) :]
            )
            yield EchoRow(
                delay_ms,
                coupling,
                reported_ms,
                name,
                erle,
                erle_quiet,
                far_hears,
                pesq_on,
                pesq_off,
                run.cpu_s / (len(run.out) / SAMPLE_RATE),
            )


def near_part(run: Run, from_s: float) -> Floats:
    """The near end's clean speech from ``from_s`` on (the PESQ reference)."""
    near: Floats = run.near[int(from_s * SAMPLE_RATE) :]
    return near


def noise_rows(c: Clips, snrs: list[float]) -> Iterator[tuple[float, str, float, float]]:
    """(input SNR dB, settings, output SNR dB, CPU per call-second) in fan noise, no far end."""
    make = engine_factory()
    near = np.concatenate([np.zeros(SAMPLE_RATE), c.near, c.near])
    silent = np.zeros(len(near))
    path = EchoPath(0.0, 60.0, room_ir())
    speech_rms = NEAR_LEVEL_DBFS
    for snr in snrs:
        noise = fan_noise(len(near), speech_rms - snr)
        for name, settings in (
            ("NS", VoiceSettings(noise_suppression=True)),
            ("AEC+NS+AGC", DEFAULT),
        ):
            run = simulate(silent, near, noise, path, make(settings))
            skip = int(CONVERGENCE_S * SAMPLE_RATE)
            measured_in = snr_db(run.mic[skip:], near[skip : len(run.mic)])
            measured_out = snr_db(run.out[skip:], near[skip : len(run.out)])
            yield snr, name, measured_in, measured_out


async def run(quick: bool, progress: Callable[[str], None] = print) -> list[str]:
    """The section's report lines."""
    lines: list[str] = []
    progress("voice: synthesizing the two talkers (espeak-ng)")
    c = clips()
    conditions = (
        [(100, 15.0, 0), (200, 10.0, 0)]
        if quick
        else [(50, 10.0, 0), (100, 15.0, 0), (200, 20.0, 0), (200, 10.0, 0), (200, 10.0, 150)]
    )
    progress(f"voice: simulated echo path, {len(conditions)} conditions")
    header = (
        "delay coupling reported settings      ERLE  (quiet) far hears  PESQ-WB on   off  CPU/s"
    )
    lines += [
        "",
        "Echo cancellation on a simulated echo path (WebRTC AEC3 via livekit), 20 ms blocks.",
        f"ERLE: far-end single talk after {CONVERGENCE_S:.0f} s, with {NOISE_DBFS:.0f} dBFS "
        "background noise (quiet: none); goal >= 25 dB.",
        "far hears: its echo below its own speech. PESQ-WB: near end in double talk, processing "
        "on / off.",
        f"Levels: far end played at {FAR_LEVEL_DBFS:.0f} dBFS, near end at the mic at "
        f"{NEAR_LEVEL_DBFS:.0f} dBFS. CPU: s per call-second.",
        header,
        "-" * len(header),
    ]
    for row in echo_rows(c, conditions):
        lines.append(
            f"{row.delay_ms:3d}ms {row.coupling_db:6.0f}dB {row.reported_ms:6d}ms {row.settings:11}"
            f"{row.erle:6.1f}dB {row.erle_quiet:5.1f}dB {row.far_hears:6.1f}dB "
            f"{row.pesq_on:10.2f} {row.pesq_off:5.2f} {row.cpu:6.4f}"
        )
    progress("voice: noise suppression in fan noise")
    header = "input SNR  settings     measured in   out    gain"
    lines += ["", "Noise suppression: near-end speech in fan-like noise", header, "-" * len(header)]
    for snr, name, measured_in, measured_out in noise_rows(c, [5.0] if quick else [0.0, 5.0, 10.0]):
        lines.append(
            f"{snr:6.0f} dB  {name:11} {measured_in:8.1f} dB {measured_out:5.1f} dB "
            f"{measured_out - measured_in:+5.1f} dB"
        )
    progress("voice: PulseAudio speaker-to-microphone loop through PortAudio")
    from benchmarks import pulse_loop

    lines += ["", *await pulse_loop.report(c.far, progress)]
    return lines


if __name__ == "__main__":
    for line in asyncio.run(run(quick=True)):
        print(line)
