"""Small, pure signal measurements on contract PCM, for tests, the demo and benchmarks.

They answer the questions end-to-end audio checks ask: how loud is it
(``rms_dbfs``), which frequency is it (``dominant_frequency``), is this tone
there (``goertzel_power``, ``detect_tone``), which keys were pressed
(``detect_dtmf_digits``), and how far is the received audio delayed from what
was sent (``align_offset``). ``resample`` converts rates with FFmpeg's
resampler so comparisons are not skewed by a crude interpolator.
"""

from __future__ import annotations

import math

import av
import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import SAMPLE_RATE, Pcm, silence

__all__ = [
    "DTMF_COL_FREQUENCIES",
    "DTMF_KEYS",
    "DTMF_ROW_FREQUENCIES",
    "align_offset",
    "detect_dtmf_digits",
    "detect_tone",
    "dominant_frequency",
    "goertzel_power",
    "resample",
    "rms_dbfs",
]

Floats = npt.NDArray[np.float64]

DTMF_ROW_FREQUENCIES: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
"""The low-group DTMF frequencies (keypad rows), in Hz."""

DTMF_COL_FREQUENCIES: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
"""The high-group DTMF frequencies (keypad columns), in Hz."""

DTMF_KEYS: tuple[str, ...] = ("123A", "456B", "789C", "*0#D")
"""The keypad: ``DTMF_KEYS[row][col]`` is the key for that row and column tone."""


def _floats(pcm: Pcm) -> Floats:
    """``pcm`` as float64 in [-1, 1), the scale every measurement here uses."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"PCM must be a 1-D mono array, got shape {arr.shape}")
    return arr.astype(np.float64) / 32768.0


def rms_dbfs(pcm: Pcm) -> float:
    """RMS level in dB relative to full scale; ``-inf`` for silence or an empty array.

    Plain RMS against a full-scale square wave: a full-scale sine reads -3.01 dBFS.
    """
    x = _floats(pcm)
    if not x.size:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _bin_power(x: Floats, freq: float, sample_rate: int) -> float:
    """``|X(freq)|^2`` for one frequency: the value the Goertzel recurrence computes.

    Evaluated as a vectorised single-bin DFT, which is exact for any (also
    non-integer-bin) frequency and far faster than a Python-level recurrence.
    """
    omega = 2 * math.pi * freq / sample_rate
    n = np.arange(x.size, dtype=np.float64) * omega
    re = float(np.dot(x, np.cos(n)))
    im = float(np.dot(x, np.sin(n)))
    return re * re + im * im


def goertzel_power(pcm: Pcm, freq: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Fraction of the signal's energy at ``freq``: about 1.0 for a pure tone, 0 without it.

    Normalised as ``2 |X(f)|^2 / (N * sum(x^2))`` (clipped to [0, 1]), so the
    result does not depend on level or length. Its bandwidth is about
    ``sample_rate / N`` Hz: over long blocks a tone a few Hz off reads low, so
    prefer ``detect_tone`` for "is it there" questions on long audio.
    """
    x = _floats(pcm)
    energy = float(np.dot(x, x))
    if energy == 0.0:
        return 0.0
    return min(1.0, 2 * _bin_power(x, freq, sample_rate) / (x.size * energy))


def _spectrum(x: Floats, sample_rate: int) -> tuple[Floats, Floats]:
    """Frequencies and power of the Hann-windowed, DC-removed, zero-padded spectrum of ``x``."""
    n_fft = 1 << max(1, (2 * x.size - 1).bit_length())
    windowed = (x - x.mean()) * np.hanning(x.size)
    spectrum = np.fft.rfft(windowed, n_fft)
    power: Floats = (spectrum.real**2 + spectrum.imag**2).astype(np.float64)
    freqs: Floats = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float64)
    return freqs, power


def dominant_frequency(pcm: Pcm, sample_rate: int = SAMPLE_RATE) -> float:
    """Frequency in Hz of the strongest spectral peak; 0.0 for silence or too-short input.

    The FFT peak is refined by parabolic interpolation on the log magnitude,
    giving sub-bin accuracy (well under 1 Hz on a second of a clean tone).
    """
    x = _floats(pcm)
    if x.size < 4:
        return 0.0
    freqs, power = _spectrum(x, sample_rate)
    power[0] = 0.0
    peak = int(np.argmax(power))
    if power[peak] <= 0.0:
        return 0.0
    bin_hz = float(freqs[1])
    if 0 < peak < power.size - 1 and power[peak - 1] > 0 and power[peak + 1] > 0:
        # Power is |X|^2, so halving its log gives the log magnitude.
        a, b, c = (0.5 * math.log(float(power[i])) for i in (peak - 1, peak, peak + 1))
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return (peak + shift) * bin_hz
    return peak * bin_hz


def detect_tone(
    pcm: Pcm,
    freq: float,
    *,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = 0.5,
    tolerance_hz: float = 20.0,
    min_dbfs: float = -60.0,
) -> bool:
    """Whether a tone at ``freq`` (within ``tolerance_hz``) clearly dominates ``pcm``.

    True when the band around ``freq`` holds at least ``threshold`` of the
    spectral energy (0.5: the tone is at least as strong as everything else
    together) and the audio is louder than ``min_dbfs``, so near-silence
    never "contains" a tone. The band is widened by the window's main lobe so
    short blocks still measure a tone that is slightly off frequency.
    """
    x = _floats(pcm)
    if x.size < 4 or rms_dbfs(pcm) < min_dbfs:
        return False
    freqs, power = _spectrum(x, sample_rate)
    total = float(power.sum())
    if total <= 0.0:
        return False
    half_width = tolerance_hz + 2 * float(freqs[1])  # a Hann main lobe is +-2 bins wide
    in_band = float(power[np.abs(freqs - freq) <= half_width].sum())
    return in_band / total >= threshold


def _dtmf_key(x: Floats, sample_rate: int) -> str | None:
    """The key whose row and column tones dominate one analysis window, if any."""
    energy = float(np.dot(x, x))
    if energy == 0.0 or 10 * math.log10(energy / x.size) < -50.0:
        return None
    scale = 2.0 / (x.size * energy)
    rows = [scale * _bin_power(x, f, sample_rate) for f in DTMF_ROW_FREQUENCIES]
    cols = [scale * _bin_power(x, f, sample_rate) for f in DTMF_COL_FREQUENCIES]
    row = int(np.argmax(rows))
    col = int(np.argmax(cols))
    best_row, best_col = rows[row], cols[col]
    second_row = max(p for i, p in enumerate(rows) if i != row)
    second_col = max(p for i, p in enumerate(cols) if i != col)
    if (
        best_row < 0.15
        or best_col < 0.15
        # The pair must carry most of the window's energy. Silence adds none, so this
        # also means the tones must fill >= 60% of the window: short blips fail.
        or best_row + best_col < 0.6
        or best_row < 4 * second_row  # and stand clear (6 dB) of their neighbours
        or best_col < 4 * second_col
    ):
        return None
    return DTMF_KEYS[row][col]


def detect_dtmf_digits(pcm: Pcm, sample_rate: int = SAMPLE_RATE) -> str:
    """Decode the DTMF key presses in ``pcm`` into a string such as ``"1234#*0"``.

    A classic decoder: 25 ms windows every 10 ms, the eight DTMF frequencies
    measured with Goertzel, a key accepted once it holds for three consecutive
    windows (tones shorter than about 25 ms are rejected, 40 ms and longer
    accepted, in line with ITU-T Q.24). A held key counts once; pressing the same
    key again needs a gap with no key between the presses, while a different
    key is a new press straight away.
    """
    x = _floats(pcm)
    window = max(1, round(0.025 * sample_rate))
    hop = max(1, round(0.010 * sample_rate))
    digits: list[str] = []
    candidate: str | None = None
    run = 0
    current: str | None = None  # the press in progress, already emitted
    for start in range(0, max(0, x.size - window) + 1, hop):
        key = _dtmf_key(x[start : start + window], sample_rate) if x.size >= window else None
        run = run + 1 if key == candidate else 1
        candidate = key
        if key is None:
            if run >= 2:
                current = None  # a real gap: the next press of the same key counts
            continue
        if run >= 3 and key != current:
            digits.append(key)
            current = key
    return "".join(digits)


def resample(pcm: Pcm, from_rate: int, to_rate: int) -> Pcm:
    """Convert mono int16 ``pcm`` from ``from_rate`` to ``to_rate`` with FFmpeg's resampler.

    The output has ``round(len(pcm) * to_rate / from_rate)`` samples, give or
    take one, time-aligned with the input.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    arr = np.ascontiguousarray(pcm, dtype=np.int16)
    if arr.ndim != 1:
        raise ValueError(f"PCM must be a 1-D mono array, got shape {arr.shape}")
    if from_rate == to_rate or not arr.size:
        return arr.copy() if from_rate == to_rate else silence(0)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out: list[Pcm] = []
    step = from_rate  # one second of input per frame keeps frames a sane size
    for start in range(0, arr.size, step):
        frame = av.AudioFrame.from_ndarray(
            arr[start : start + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = from_rate
        out.extend(
            np.array(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in resampler.resample(frame)
        )
    out.extend(
        np.array(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in resampler.resample(None)
    )
    return np.concatenate(out) if out else silence(0)


def align_offset(
    reference: Pcm,
    degraded: Pcm,
    sample_rate: int = SAMPLE_RATE,
    max_lag_s: float = 2.0,
) -> int:
    """Lag in samples of ``degraded`` behind ``reference``, by FFT cross-correlation.

    Positive when ``degraded`` is late, i.e. ``degraded[n + lag]`` lines up
    with ``reference[n]``; only lags within ``max_lag_s`` are considered.
    Returns 0 when either signal is empty or silent.
    """
    ref = _floats(reference)
    deg = _floats(degraded)
    if not ref.size or not deg.size:
        return 0
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    if not np.any(ref) or not np.any(deg):
        return 0
    n_fft = 1 << (ref.size + deg.size - 1).bit_length()
    corr: Floats = np.fft.irfft(np.fft.rfft(deg, n_fft) * np.conj(np.fft.rfft(ref, n_fft)), n_fft)
    max_lag = max(0, int(max_lag_s * sample_rate))
    pos = min(max_lag, deg.size - 1)  # corr[k] for k >= 0 is deg delayed by k
    neg = min(max_lag, ref.size - 1)  # corr[n_fft - k] is deg early by k
    lags = np.concatenate([np.arange(0, pos + 1), np.arange(-neg, 0)])
    values = np.concatenate([corr[: pos + 1], corr[n_fft - neg :] if neg else corr[:0]])
    return int(lags[int(np.argmax(values))])
