"""The stats monitor's audio level: the JS SDK's second analyser (fftSize 32, no
smoothing, -127..0 dB) scaled to 0..32767."""

from __future__ import annotations

import math

import numpy as np
import pytest

from softphone.core.audio_level import audio_level

pytestmark = pytest.mark.pure


def _spec_level(pcm: list[int]) -> float:
    """The Web Audio spec's steps written out longhand, for the newest 32 samples.

    Blackman window (alpha 0.16), X[k] = 1/N sum x[n] w[n] e^(-2 pi i k n / N) for
    the 16 bins, dB = 20 log10 |X[k]|, byte = floor(255 / 127 * (dB + 127))
    clamped to 0..255, then JS: mean byte / 255 * 32767.
    """
    n = 32
    x = ([0] * n + pcm)[-n:]
    a0, a1, a2 = 0.42, 0.5, 0.08
    total = 0
    for k in range(n // 2):
        re = im = 0.0
        for i, value in enumerate(x):
            w = a0 - a1 * math.cos(2 * math.pi * i / n) + a2 * math.cos(4 * math.pi * i / n)
            re += value / 32768 * w * math.cos(-2 * math.pi * k * i / n)
            im += value / 32768 * w * math.sin(-2 * math.pi * k * i / n)
        magnitude = math.hypot(re, im) / n
        if magnitude == 0:
            continue
        byte = math.floor(255 / 127 * (20 * math.log10(magnitude) + 127))
        total += min(max(byte, 0), 255)
    return total / (n // 2) / 255 * 32767


def _sine(amplitude: float, hz: float, count: int = 960) -> np.ndarray:
    t = np.arange(count) / 48_000
    return np.round(amplitude * np.sin(2 * math.pi * hz * t)).astype(np.int16)


def test_silence_is_zero() -> None:
    assert audio_level(np.zeros(960, dtype=np.int16)) == 0
    assert audio_level(np.zeros(0, dtype=np.int16)) == 0


@pytest.mark.parametrize(("amplitude", "hz"), [(30, 440), (1_000, 1_000), (20_000, 3_000)])
def test_matches_the_spec_computation_on_the_newest_32_samples(amplitude: float, hz: float) -> None:
    pcm = _sine(amplitude, hz)
    assert audio_level(pcm) == pytest.approx(_spec_level(pcm.tolist()), abs=0.5)


def test_only_the_newest_32_samples_count() -> None:
    tail = _sine(5_000, 1_000, 32)
    loud_then_tail = np.concatenate([_sine(30_000, 200, 928), tail])
    quiet_then_tail = np.concatenate([np.zeros(928, dtype=np.int16), tail])
    assert audio_level(loud_then_tail) == audio_level(quiet_then_tail) > 0


def test_louder_is_higher_and_stays_within_the_legacy_range() -> None:
    levels = [audio_level(_sine(amplitude, 1_000)) for amplitude in (10, 100, 1_000, 32_767)]
    assert levels == sorted(levels)
    assert len(set(levels)) == len(levels)
    assert all(0 < level <= 32_767 for level in levels)
    full = np.full(32, 32_767, dtype=np.int16)  # DC at full scale: the 0 Hz bin is loudest
    assert 0 < audio_level(full) <= 32_767
