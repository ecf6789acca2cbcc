"""Real speech for the benchmarks (espeak-ng) and its PESQ scoring.

The clip is synthesized once per run into a temporary directory, resampled to
the 48 kHz backend rate with a short silent lead-in. Scores compare what a
device heard with the clip, after finding where the clip starts in the
recording by cross-correlation (PESQ aligns delay changes within the file).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from softphone.audio_backends.analysis import align_offset, resample
from softphone.audio_backends.base import SAMPLE_RATE, Pcm

SENTENCES = (
    "The birch canoe slid on the smooth planks. "
    "Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. "
    "These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls."
)
LEAD_IN_S = 0.5


def speech_clip() -> Pcm:
    """About 9 s of espeak-ng speech at 48 kHz (RuntimeError if espeak-ng is missing)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-s", "150", "-w", str(path), SENTENCES], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    speech = resample(raw, rate, SAMPLE_RATE)
    lead = np.zeros(int(LEAD_IN_S * SAMPLE_RATE), dtype=np.int16)
    return np.concatenate([lead, speech, lead])


def aligned(reference: Pcm, recording: Pcm) -> Pcm:
    """The stretch of ``recording`` that lines up with ``reference`` (zero-padded)."""
    lag = align_offset(reference, recording, max_lag_s=len(recording) / SAMPLE_RATE)
    out = np.zeros(len(reference), dtype=np.int16)
    start = max(0, lag)
    piece = recording[start : start + len(reference)]
    offset = max(0, -lag)
    out[offset : offset + len(piece)] = piece[: len(reference) - offset]
    return out


def pesq_score(reference: Pcm, recording: Pcm, *, wideband: bool) -> float:
    """PESQ (P.862.2 wideband at 16 kHz, or P.862 narrowband at 8 kHz) of ``recording``."""
    from pesq import pesq

    rate = 16000 if wideband else 8000
    ref = resample(reference, SAMPLE_RATE, rate)
    deg = resample(aligned(reference, recording), SAMPLE_RATE, rate)
    n = min(len(ref), len(deg))
    return float(pesq(rate, ref[:n], deg[:n], "wb" if wideband else "nb"))
