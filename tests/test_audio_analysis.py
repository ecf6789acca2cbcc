"""Tests for the pure signal helpers in ``softphone.audio_backends.analysis``.

Each helper is checked against signals whose answer is known by construction:
synthesized sines, DTMF key sequences, noise and shifted copies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from softphone.audio_backends import (
    SAMPLE_RATE,
    Pcm,
    ToneSource,
    align_offset,
    detect_dtmf_digits,
    detect_tone,
    dominant_frequency,
    goertzel_power,
    resample,
    rms_dbfs,
)
from softphone.audio_backends.analysis import (
    DTMF_COL_FREQUENCIES,
    DTMF_KEYS,
    DTMF_ROW_FREQUENCIES,
)

pytestmark = pytest.mark.pure


def sine(freq: float, seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> Pcm:
    """A sine of ``freq`` Hz as int16."""
    t = np.arange(round(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def noise(seconds: float, level: float = 0.3, seed: int = 0, rate: int = SAMPLE_RATE) -> Pcm:
    """White noise with standard deviation ``level`` of full scale, as int16."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, level * 32767, round(seconds * rate))
    return np.clip(samples, -32768, 32767).astype(np.int16)


def dtmf_sequence(
    keys: str, rate: int = SAMPLE_RATE, tone_s: float = 0.070, gap_s: float = 0.050
) -> Pcm:
    """Key presses as dual tones (each tone at -9 dBFS peak) separated by silence."""
    parts: list[Pcm] = [np.zeros(round(gap_s * rate), dtype=np.int16)]
    t = np.arange(round(tone_s * rate)) / rate
    for key in keys:
        row = next(i for i, line in enumerate(DTMF_KEYS) if key in line)
        col = DTMF_KEYS[row].index(key)
        low, high = DTMF_ROW_FREQUENCIES[row], DTMF_COL_FREQUENCIES[col]
        tone = 0.35 * 32767 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        parts.append(np.round(tone).astype(np.int16))
        parts.append(np.zeros(round(gap_s * rate), dtype=np.int16))
    return np.concatenate(parts)


# --- rms_dbfs -------------------------------------------------------------------------


def test_rms_dbfs_levels() -> None:
    square = np.where(np.arange(4800) % 100 < 50, 32767, -32767).astype(np.int16)
    assert rms_dbfs(square) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(sine(1000, 0.1, amplitude=1.0)) == pytest.approx(-3.01, abs=0.02)
    assert rms_dbfs(sine(1000, 0.1, amplitude=0.1)) == pytest.approx(-23.01, abs=0.05)
    assert rms_dbfs(np.zeros(960, dtype=np.int16)) == -math.inf
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == -math.inf


# --- goertzel_power -------------------------------------------------------------------


def test_goertzel_power_is_normalised() -> None:
    tone = sine(1000, 0.03)
    assert goertzel_power(tone, 1000) == pytest.approx(1.0, abs=0.02)
    assert goertzel_power(sine(1000, 0.03, amplitude=0.01), 1000) == pytest.approx(1.0, abs=0.02)
    assert goertzel_power(tone, 2000) < 0.01
    assert goertzel_power(np.zeros(960, dtype=np.int16), 1000) == 0.0
    mix = (sine(697, 0.05) // 2 + sine(1336, 0.05) // 2).astype(np.int16)
    assert goertzel_power(mix, 697) == pytest.approx(0.5, abs=0.03)
    assert goertzel_power(mix, 1336) == pytest.approx(0.5, abs=0.03)


def test_goertzel_power_at_other_sample_rates() -> None:
    assert goertzel_power(sine(941, 0.05, rate=8000), 941, 8000) == pytest.approx(1.0, abs=0.02)


# --- dominant_frequency ---------------------------------------------------------------


@pytest.mark.parametrize("freq", [100.0, 440.0, 1000.0, 2718.3, 7000.0, 15000.0])
def test_dominant_frequency_finds_the_tone(freq: float) -> None:
    assert dominant_frequency(sine(freq, 1.0)) == pytest.approx(freq, abs=0.5)


def test_dominant_frequency_short_blocks_and_other_rates() -> None:
    # 20 ms is a 50 Hz bin; interpolation still lands within a few Hz.
    assert dominant_frequency(sine(1000, 0.02)) == pytest.approx(1000, abs=5)
    assert dominant_frequency(sine(1000, 0.5, rate=8000), 8000) == pytest.approx(1000, abs=1)
    tone_in_noise = (sine(1500, 1.0) // 2 + noise(1.0, 0.05) // 2).astype(np.int16)
    assert dominant_frequency(tone_in_noise) == pytest.approx(1500, abs=1)
    assert dominant_frequency(np.zeros(960, dtype=np.int16)) == 0.0
    assert dominant_frequency(np.zeros(2, dtype=np.int16)) == 0.0


# --- detect_tone ----------------------------------------------------------------------


def test_detect_tone_present_and_absent() -> None:
    tone = sine(1000, 0.2)
    assert detect_tone(tone, 1000)
    assert detect_tone(sine(1010, 0.2), 1000)  # within the default 20 Hz tolerance
    assert not detect_tone(tone, 1200)
    assert not detect_tone(sine(1000, 0.2, amplitude=0.0001), 1000)  # too quiet to count
    assert not detect_tone(np.zeros(9600, dtype=np.int16), 1000)
    assert not detect_tone(noise(0.2), 1000)


def test_detect_tone_against_the_rest_of_the_spectrum() -> None:
    tone = sine(1000, 0.5, amplitude=0.5)
    with_some_noise = (tone.astype(np.int32) + noise(0.5, 0.05)).astype(np.int16)
    assert detect_tone(with_some_noise, 1000)
    # An equally loud second tone: 1 kHz holds half the energy, not "clearly" present.
    duet = (tone // 2 + sine(1700, 0.5) // 2).astype(np.int16)
    assert not detect_tone(duet, 1000, threshold=0.7)
    assert detect_tone(duet, 1000, threshold=0.4)
    assert detect_tone(sine(1000, 0.5, rate=8000), 1000, sample_rate=8000)


# --- detect_dtmf_digits ---------------------------------------------------------------


def test_detect_dtmf_digits_decodes_a_sequence() -> None:
    assert detect_dtmf_digits(dtmf_sequence("1234#*0")) == "1234#*0"


def test_detect_dtmf_digits_every_key_and_other_rates() -> None:
    everything = "".join(DTMF_KEYS)
    assert detect_dtmf_digits(dtmf_sequence(everything)) == everything
    assert detect_dtmf_digits(dtmf_sequence("9876", rate=8000), 8000) == "9876"


def test_detect_dtmf_digits_repeats_need_a_gap() -> None:
    assert detect_dtmf_digits(dtmf_sequence("1155")) == "1155"
    assert detect_dtmf_digits(dtmf_sequence("7", tone_s=0.5)) == "7"  # a long press is one key
    assert detect_dtmf_digits(dtmf_sequence("12", gap_s=0.0)) == "12"  # change of key, no gap


@pytest.mark.parametrize("rate", [8000, SAMPLE_RATE])
def test_detect_dtmf_digits_duration_limits(rate: int) -> None:
    assert detect_dtmf_digits(dtmf_sequence("369", rate, tone_s=0.040, gap_s=0.040), rate) == "369"
    assert detect_dtmf_digits(dtmf_sequence("5", rate, tone_s=0.020), rate) == ""


def test_detect_dtmf_digits_rejects_non_dtmf_audio() -> None:
    assert detect_dtmf_digits(np.zeros(SAMPLE_RATE, dtype=np.int16)) == ""
    assert detect_dtmf_digits(noise(1.0)) == ""
    assert detect_dtmf_digits(sine(697, 0.5)) == ""  # one tone alone is not a key
    assert detect_dtmf_digits(ToneSource((440.0, 1209.0)).read(SAMPLE_RATE // 2)) == ""
    assert detect_dtmf_digits(np.zeros(10, dtype=np.int16)) == ""


def test_detect_dtmf_digits_survives_noise_and_tone_source() -> None:
    keys = dtmf_sequence("2580")
    noisy = (keys.astype(np.int32) + noise(keys.size / SAMPLE_RATE, 0.02, seed=3)).astype(np.int16)
    assert detect_dtmf_digits(noisy) == "2580"
    press = ToneSource((852.0, 1477.0), amplitude=0.5, duration_s=0.08).read(SAMPLE_RATE // 5)
    assert detect_dtmf_digits(press) == "9"


# --- resample -------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [(48_000, 8_000), (8_000, 48_000), (44_100, 48_000)])
def test_resample_keeps_length_and_frequency(src: int, dst: int) -> None:
    tone = sine(1000, 2.5, rate=src)
    out = resample(tone, src, dst)
    assert out.dtype == np.int16
    assert out.size == pytest.approx(round(tone.size * dst / src), abs=2)
    assert dominant_frequency(out, dst) == pytest.approx(1000, abs=1)
    assert rms_dbfs(out[dst // 10 : -dst // 10]) == pytest.approx(rms_dbfs(tone), abs=0.2)


def test_resample_round_trip_and_edge_cases() -> None:
    tone = sine(800, 1.0)
    back = resample(resample(tone, SAMPLE_RATE, 16_000), 16_000, SAMPLE_RATE)
    assert back.size == pytest.approx(tone.size, abs=3)
    lag = align_offset(tone, back, max_lag_s=0.01)
    assert abs(lag) <= 2  # time-aligned, not delayed by the filter
    same = resample(tone, SAMPLE_RATE, SAMPLE_RATE)
    assert np.array_equal(same, tone) and same is not tone
    assert resample(np.zeros(0, dtype=np.int16), 8000, 48000).size == 0
    with pytest.raises(ValueError):
        resample(tone, 0, 8000)


# --- align_offset ---------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0, 1, 1234, 47_999, -480, -20_000])
def test_align_offset_finds_a_known_shift(shift: int) -> None:
    reference = noise(1.5, seed=11)
    if shift >= 0:
        degraded = np.concatenate([np.zeros(shift, dtype=np.int16), reference])
    else:
        degraded = reference[-shift:]
    assert align_offset(reference, degraded) == shift


def test_align_offset_with_level_change_noise_and_limits() -> None:
    reference = noise(1.0, seed=5)
    delayed = np.concatenate([np.zeros(2400, dtype=np.int16), reference // 4])
    degraded = (delayed.astype(np.int32) + noise(delayed.size / SAMPLE_RATE, 0.05, seed=6)).astype(
        np.int16
    )
    assert align_offset(reference, degraded) == 2400
    assert align_offset(sine(500, 0.2, rate=8000), sine(500, 0.2, rate=8000), 8000) == 0
    # A lag beyond max_lag_s cannot be reported.
    assert abs(align_offset(reference, delayed, max_lag_s=0.01)) <= 480
    assert align_offset(reference, np.zeros(100, dtype=np.int16)) == 0
    assert align_offset(np.zeros(0, dtype=np.int16), reference) == 0
