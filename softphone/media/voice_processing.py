"""Voice processing glue, without I/O: settings, the far-end reference and 10 ms framing.

A browser runs WebRTC's audio processing (echo cancellation, noise suppression,
gain control) on every microphone. Echo cancellation needs two signals: the
*near end* (the microphone) and the *far end* (what the speakers play, the
"reference"), paired so that the reference reaches the canceller no later than
its echo. This module keeps those two on one time axis, in samples of
``round(seconds * 48000)`` of the event loop's clock:

* :class:`ReferenceTrack`: one output's played audio. Each mixed frame is
  placed at the time it will be *heard* (written now, plus the output's
  playout delay); idle time between frames is silence.
* :class:`FarEnd`: every output's track, summed: what the room hears.
* :class:`CaptureProcessor`: places each microphone block at the time it was
  *captured* (read now, minus the input's capture delay), takes the reference
  for it and runs the engine 10 ms at a time.

Measured times jitter (device buffers drain in blocks, the event loop is late
now and then), so both sides keep a contiguous position (:class:`Cursor`) and
follow the measurements only when they disagree for a sustained stretch: the
canceller sees continuous signals, and only real changes (playback restarting
after idle, a buffer flushed) move the alignment. One change is known at once:
an output written to after it had played everything (a late loop or late call
audio made it run dry) restarts where it says, not right after the old audio.

The canceller must get each reference frame no later than its echo, and
WebRTC's AEC3 finds the rest of the delay itself within about 400 ms
(measured). So the reference handed to the engine *leads* the capture: by
:data:`TARGET_DELAY_S` when the devices' delays are right, and corrected by
the echo delay that :class:`EchoDelayEstimator` measures from the signals
when they are not (a device that reports half its latency). The lead never
exceeds the reference actually written: with no delay reported at all, the
newest reference is used. Either way the canceller sees a delay inside its
range, with room for error on both sides.

With gain control and echo cancellation together, :class:`EchoAwareGain`
keeps the gain control from learning on (and amplifying) residual echo.

The canceller itself is a :class:`VoiceEngine`, WebRTC's audio processing
module in production (:mod:`softphone.media.webrtc_apm`); tests give simpler
ones. Everything here is fed times and samples: no clock, no threads.
"""

from __future__ import annotations

import math
import statistics
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import numpy as np

from softphone.audio_backends.base import SAMPLE_RATE, Pcm

__all__ = [
    "APM_FRAME_SAMPLES",
    "PROCESSING_KEYS",
    "CaptureProcessor",
    "Cursor",
    "EchoAwareGain",
    "EchoDelayEstimator",
    "FarEnd",
    "ReferenceTrack",
    "VoiceEngine",
    "VoiceSettings",
    "position",
    "voice_settings",
]

APM_FRAME_SAMPLES = SAMPLE_RATE // 100
"""WebRTC's audio processing works on 10 ms frames: 480 samples at 48 kHz."""

TARGET_DELAY_S = 0.12
"""The delay the canceller should see between a reference frame and its echo."""

SAFE_DELAY_S = (0.02, 0.32)
"""Delays the canceller handles well (it searches about 0-400 ms): a measured echo
delay outside this range moves the lead back to :data:`TARGET_DELAY_S`."""

REFERENCE_HISTORY_S = 5.0
"""Reference kept per output; older positions read as silence."""

RESYNC_S = 0.15
"""A measured position this far from the contiguous one moves it at once."""

DRIFT_TOLERANCE_S = 0.012
"""A sustained disagreement larger than this moves the contiguous position."""

RESTART_S = 0.2
"""After the output ran dry, how long the frames since the restart may still move earlier
(its playout margin, 60 ms for PortAudio, fills within this)."""

DRIFT_WINDOW = 25
"""Blocks (0.5 s of 20 ms blocks) whose median disagreement is compared with the tolerance."""

LEAD_WINDOW = 100
"""Capture blocks (2 s) over which the written-ahead reference is measured for the lead."""

LEAD_SETTLE_BLOCKS = 10
"""Blocks over which the lead follows the written-ahead reference before it is set."""

ESTIMATE_WINDOW_S = 3.0
"""Microphone history correlated with the reference to find the echo's delay."""

ESTIMATE_EVERY_FRAMES = 100
"""10 ms frames between two delay estimates (one second)."""

MIN_ECHO_DELAY_S = -0.3
MAX_ECHO_DELAY_S = 1.0
"""The echo delays searched (negative: the devices report more delay than they have)."""

ESTIMATE_MIN_CORRELATION = 0.8
"""Envelope correlation below which no echo delay is taken."""

ENVELOPE_FLOOR_DBFS = -60.0
"""Frame levels below this count as silence in the envelopes."""

FAR_ACTIVE_DBFS = -55.0
"""A reference frame louder than this means the far end is playing (its echo may be near)."""

FAR_HOLD_FRAMES = 40
"""10 ms frames the far end counts as playing after its last loud frame: the lead of
the reference (up to 120 ms) plus the room's reverberation."""

LEARN_FLOOR_DBFS = -50.0
"""Only frames louder than this (speech, not noise) teach the gate the AGC's gain."""

GAIN_SMOOTHING = 0.05
"""Weight of one speech frame in the learnt gain (about 0.2 s of speech to follow)."""

PROCESSING_KEYS: Mapping[str, tuple[str, ...]] = {
    "echo_cancellation": ("echoCancellation", "echo_cancellation"),
    "noise_suppression": ("noiseSuppression", "noise_suppression"),
    "auto_gain_control": ("autoGainControl", "auto_gain_control"),
}
"""Our setting -> the constraint names that set it (the JS camelCase and snake_case)."""


def position(seconds: float) -> int:
    """The sample position of a clock time on the shared axis."""
    return round(seconds * SAMPLE_RATE)


# -- settings ----------------------------------------------------------------------------
@attrs.frozen
class VoiceSettings:
    """Which parts of the processing run on one input (the browser's three switches)."""

    echo_cancellation: bool = False
    noise_suppression: bool = False
    auto_gain_control: bool = False

    @property
    def enabled(self) -> bool:
        """Whether anything runs at all (else the input passes through untouched)."""
        return self.echo_cancellation or self.noise_suppression or self.auto_gain_control

    @property
    def high_pass_filter(self) -> bool:
        """The high-pass filter runs with any of the three, as in Chrome."""
        return self.enabled


def _constraint_bool(value: object) -> bool | None:
    """A JS ``ConstrainBoolean``: ``true``, ``{"exact": true}`` or ``{"ideal": true}``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        for key in ("exact", "ideal"):
            found = value.get(key)
            if isinstance(found, bool):
                return found
    return None


def voice_settings(audio: Mapping[str, Any] | bool | None, *, real_device: bool) -> VoiceSettings:
    """The settings for an input acquired with the JS audio constraints ``audio``.

    Each of ``echoCancellation``, ``noiseSuppression``, ``autoGainControl`` (or
    the snake_case name) turns its part on or off; a part left unset is on for
    a real capture device (as in a browser) and off for virtual inputs (files,
    tones, memory pipes), whose audio was never in a room.
    """
    found: dict[str, bool] = {}
    if isinstance(audio, Mapping):
        for setting, names in PROCESSING_KEYS.items():
            for name in names:
                value = _constraint_bool(audio.get(name))
                if value is not None:
                    found[setting] = value
                    break
    return VoiceSettings(**{name: found.get(name, real_device) for name in PROCESSING_KEYS})


# -- the time axis -----------------------------------------------------------------------
class Cursor:
    """A contiguous position on the time axis that follows jittery measurements.

    :meth:`place` says where a block measured to start at ``measured`` goes:
    right after the previous block, unless the measurements have disagreed
    with that by more than :data:`DRIFT_TOLERANCE_S` (median of the last
    :data:`DRIFT_WINDOW` blocks: slow drift, a playout buffer that grew) or
    the last one by more than :data:`RESYNC_S` (a restart after idle, a
    flushed buffer): then it follows the measurements.
    """

    def __init__(self) -> None:
        self.next: int | None = None
        """Where the next block goes if it stays contiguous; None before the first."""
        self._errors: deque[int] = deque(maxlen=DRIFT_WINDOW)
        self.resyncs = 0
        """How often the position jumped (first placement excluded)."""

    def place(self, measured: int, length: int) -> int:
        """The start position for a block of ``length`` samples measured at ``measured``."""
        if self.next is None:
            start = measured
        else:
            error = measured - self.next
            start = self.next
            if abs(error) > position(RESYNC_S):
                start = measured
                self.resyncs += 1
                self._errors.clear()
            else:
                self._errors.append(error)
                if len(self._errors) == self._errors.maxlen:
                    drift = round(statistics.median(self._errors))
                    if abs(drift) > position(DRIFT_TOLERANCE_S):
                        start = self.next + drift
                        self._errors.clear()
        self.next = start + length
        return start

    def restart(self, measured: int) -> None:
        """Continue at ``measured``: the stream broke (an output that ran dry)."""
        if self.next is not None:
            self.resyncs += 1
        self.next = measured
        self._errors.clear()

    def shift(self, samples: int) -> None:
        """Move the contiguous position by ``samples`` (what was placed moved with it)."""
        if self.next is not None:
            self.next += samples
        self._errors.clear()


class ReferenceTrack:
    """What one output plays, by the time it is heard, for the last :data:`REFERENCE_HISTORY_S`.

    Positions never written (before the first frame, gaps while the output
    was idle) read as silence.

    Frames are kept contiguous (:class:`Cursor`) except when the output ran
    dry. A frame written after everything before it was heard (the event
    loop was late, or the call's audio was) cannot continue that audio: the
    output played silence meanwhile and now waits for its playout margin.
    Playback restarts at the measured time, and while the margin fills
    (:data:`RESTART_S`), the frames since the restart move earlier when a
    later frame shows they play sooner than said (written in a burst, they
    fill the margin at once; the output cannot know that when asked).
    """

    def __init__(self) -> None:
        self._ring = np.zeros(position(REFERENCE_HISTORY_S), dtype=np.int16)
        self._cursor = Cursor()
        self.end: int | None = None
        """One past the newest position written; None before the first frame."""
        self._restart: tuple[int, int] | None = None
        """Where playback restarted after the output ran dry and where that frame was
        written, while the margin fills."""

    @property
    def resyncs(self) -> int:
        """How often playback moved on the time axis (restarts after idle, flushes)."""
        return self._cursor.resyncs

    def push(self, pcm: Pcm, heard_at: int, written_at: int | None = None) -> None:
        """Record ``pcm``, whose first sample is heard at position ``heard_at``, written
        to the output at position ``written_at`` (None: unknown, no restart detection)."""
        length = len(pcm)
        if not length:
            return
        self._follow_restart(heard_at, written_at)
        start = self._cursor.place(heard_at, length)
        size = len(self._ring)
        if self.end is not None:
            if start > self.end:  # idle gap: silence
                self._fill(self.end, min(start - self.end, size), None)
            elif start + length < self.end:  # moved back: what followed is stale
                self._fill(start + length, self.end - start - length, None)
        if length > size:
            pcm, start = pcm[-size:], start + length - size
        self._fill(start, len(pcm), pcm)
        self.end = start + len(pcm)

    def _follow_restart(self, heard_at: int, written_at: int | None) -> None:
        """Restart playback after the output ran dry, and correct it while the margin fills."""
        end = self.end
        if end is None or written_at is None:
            return
        if end < written_at:  # everything before was heard: the output ran dry
            self._cursor.restart(heard_at)
            self._restart = (heard_at, written_at)
            return
        if self._restart is None:
            return
        restart, restart_written = self._restart
        # This frame plays sooner than the contiguous position: so do the frames since
        # the restart, queued right before it (but not before the first was written).
        early = min(end - heard_at, restart - restart_written)
        if early > position(DRIFT_TOLERANCE_S):
            moved = self.read(restart, end - restart)
            self._fill(restart - early, len(moved), moved)
            self._fill(end - early, early, None)
            end -= early
            restart -= early
            self.end = end
            self._cursor.shift(-early)
            self._restart = (restart, restart_written)
        if end - restart > position(RESTART_S):
            self._restart = None  # the margin has filled: contiguous from here

    def _fill(self, start: int, length: int, pcm: Pcm | None) -> None:
        size = len(self._ring)
        index = start % size
        first = min(length, size - index)
        self._ring[index : index + first] = 0 if pcm is None else pcm[:first]
        if first < length:
            self._ring[: length - first] = 0 if pcm is None else pcm[first:length]

    def read(self, start: int, length: int) -> Pcm:
        """The samples heard at positions ``start`` .. ``start + length`` (silence if unknown)."""
        out = np.zeros(length, dtype=np.int16)
        if self.end is None:
            return out
        lo = max(start, self.end - len(self._ring))
        hi = min(start + length, self.end)
        if hi <= lo:
            return out
        size = len(self._ring)
        index = np.arange(lo, hi) % size
        out[lo - start : hi - start] = self._ring[index]
        return out


class FarEnd:
    """Everything the outputs play, summed: the echo canceller's reference.

    Tracks are held weakly: an output that goes away (its mixer dropped)
    leaves the sum on its own.
    """

    def __init__(self) -> None:
        self._tracks: weakref.WeakSet[ReferenceTrack] = weakref.WeakSet()

    def track(self) -> ReferenceTrack:
        """A new track for one output (keep it alive as long as the output plays)."""
        track = ReferenceTrack()
        self._tracks.add(track)
        return track

    @property
    def end(self) -> int | None:
        """One past the newest position any output has written; None before any."""
        ends = [t.end for t in list(self._tracks) if t.end is not None]
        return max(ends) if ends else None

    def read(self, start: int, length: int) -> Pcm:
        """The sum of every output at positions ``start`` .. ``start + length``."""
        tracks = list(self._tracks)
        if len(tracks) == 1:
            return tracks[0].read(start, length)
        total = np.zeros(length, dtype=np.int32)
        for track in tracks:
            total += track.read(start, length)
        out: Pcm = np.clip(total, -32768, 32767).astype(np.int16)
        return out


# -- the engine and the framing ----------------------------------------------------------
class VoiceEngine(Protocol):
    """An audio processing engine working on 10 ms frames (WebRTC's APM in production)."""

    def process(self, near: Pcm, far: Pcm, delay_ms: int) -> Pcm:
        """Process one microphone frame ``near`` given the reference frame ``far``.

        Both are :data:`APM_FRAME_SAMPLES` long; ``far`` leads its echo in
        ``near`` by about ``delay_ms``. Returns the processed microphone frame.
        """
        ...

    def close(self) -> None:
        """Release the engine."""
        ...


def _dbfs(pcm: Pcm) -> float:
    """RMS level of ``pcm`` in dBFS (-inf for silence)."""
    energy = float(np.mean(np.square(pcm, dtype=np.float64))) if len(pcm) else 0.0
    return 10 * math.log10(energy / 32768.0**2) if energy > 0 else -math.inf


class EchoAwareGain:
    """Gain control that adapts on the near end only: a gate around an AGC.

    An automatic gain control fed the echo canceller's output during far-end
    single talk sees quiet, speech-like residual echo and raises its gain,
    bringing the echo back. This gate decides per 10 ms frame: while the far
    end plays (reference above :data:`FAR_ACTIVE_DBFS`, and for
    :data:`FAR_HOLD_FRAMES` after, the echo's delay and reverberation), the
    AGC is bypassed and its last gain applied (:meth:`apply`); otherwise the
    AGC runs and its gain is learnt from speech frames (:meth:`learn`).
    """

    def __init__(self) -> None:
        self.gain_db = 0.0
        """The gain the AGC applied to recent near-end speech (smoothed)."""
        self._hold = 0

    def far_active(self, far: Pcm) -> bool:
        """Whether the far end plays now (or did within the hold): the AGC must not adapt."""
        if _dbfs(far) > FAR_ACTIVE_DBFS:
            self._hold = FAR_HOLD_FRAMES
        elif self._hold:
            self._hold -= 1
        return self._hold > 0

    def learn(self, before: Pcm, after: Pcm) -> None:
        """The AGC turned ``before`` into ``after``: follow its gain on speech frames."""
        level = _dbfs(before)
        if level > LEARN_FLOOR_DBFS:
            self.gain_db += GAIN_SMOOTHING * (_dbfs(after) - level - self.gain_db)

    def apply(self, pcm: Pcm) -> Pcm:
        """``pcm`` at the learnt gain (clipped)."""
        if not self.gain_db:
            return pcm
        scaled = np.round(pcm.astype(np.float64) * 10 ** (self.gain_db / 20))
        out: Pcm = np.clip(scaled, -32768, 32767).astype(np.int16)
        return out


class EchoDelayEstimator:
    """Finds where the microphone hears the reference: the echo's bulk delay on the axis.

    Output and input delays are what the devices report, and a device may
    report less (or more) latency than it has, while WebRTC's AEC3 only
    searches about 400 ms. So
    the 10 ms energy envelopes of the last :data:`ESTIMATE_WINDOW_S` of
    microphone are correlated with the reference's at every lag from
    :data:`MIN_ECHO_DELAY_S` to :data:`MAX_ECHO_DELAY_S` (5 ms steps), once a
    second while the far end plays. A lag with correlation above
    :data:`ESTIMATE_MIN_CORRELATION` found twice in a row (within 10 ms)
    becomes :attr:`delay`; if the canceller would then see a delay outside
    :data:`SAFE_DELAY_S`, the lead puts the reference back so that it sees
    about :data:`TARGET_DELAY_S`, whatever the devices said.
    """

    def __init__(self) -> None:
        size = round(ESTIMATE_WINDOW_S * 100)
        self._positions: deque[int] = deque(maxlen=size)
        self._energies: deque[float] = deque(maxlen=size)
        self._frames = 0
        self._candidate: int | None = None
        self.delay: int | None = None
        """The echo's delay in samples (heard at p, captured at p + delay); None until found."""
        self.correlation = 0.0
        """The correlation of the last estimate."""

    def add(self, near: Pcm, captured_at: int, far_end: FarEnd) -> None:
        """Record a microphone frame captured at ``captured_at``; estimate once a second."""
        self._positions.append(captured_at)
        self._energies.append(float(np.sum(np.square(near, dtype=np.float64))))
        self._frames += 1
        if (
            self._frames % ESTIMATE_EVERY_FRAMES == 0
            and len(self._energies) == self._energies.maxlen
        ):
            self._estimate(far_end)

    def _estimate(self, far_end: FarEnd) -> None:
        end = far_end.end
        if end is None:
            return
        frame = APM_FRAME_SAMPLES
        positions = np.asarray(self._positions, dtype=np.int64)
        lags = np.arange(
            position(MIN_ECHO_DELAY_S), position(MAX_ECHO_DELAY_S) + 1, position(0.005)
        )
        lags = lags[positions[-1] - lags + frame <= end]  # only references already written
        if not len(lags):
            return
        base = int(positions.min() - lags.max())
        span = int(positions.max() - lags.min() + frame - base)
        ref = far_end.read(base, span).astype(np.float64)
        cumulative = np.concatenate(([0.0], np.cumsum(ref * ref)))
        index = positions[:, None] - lags[None, :] - base
        ref_energy = cumulative[index + frame] - cumulative[index]
        floor = frame * (32768.0 * 10 ** (ENVELOPE_FLOOR_DBFS / 20)) ** 2
        if np.mean(ref_energy.max(axis=1) > floor * 10) < 0.2:
            return  # the far end hardly played: nothing to find
        mic = np.log10(np.asarray(self._energies) + floor)
        env = np.log10(ref_energy + floor)
        mic -= mic.mean()
        env -= env.mean(axis=0)
        norms = np.sqrt(np.sum(env * env, axis=0) * np.sum(mic * mic))
        correlation = (mic @ env) / np.where(norms > 0, norms, np.inf)
        best = int(np.argmax(correlation))
        self.correlation = float(correlation[best])
        if self.correlation < ESTIMATE_MIN_CORRELATION:
            self._candidate = None
            return
        lag = int(lags[best])
        if self._candidate is not None and abs(lag - self._candidate) <= position(0.01):
            self.delay = lag
        self._candidate = lag


class _Lead:
    """How far ahead of the capture the reference is taken (see the module doc).

    Every move of the lead changes the delay the canceller sees and makes it
    re-converge (seconds of leaking echo), so the lead is set once and then
    moves only when it must:

    * at first, to :data:`TARGET_DELAY_S` or the reference written ahead of
      the capture (the reference must exist), whichever is less;
    * down, when the reference written ahead stays short of it, by any amount
      (the end of every reference block would be silence the canceller cannot
      use): its median over the last :data:`LEAD_WINDOW` blocks (an output
      starved for a while by a late loop or network, whose buffer refills,
      does not count; re-converging would leak more than those blocks), to
      its 10th percentile;
    * to a new correction, when the echo delay measured by
      :class:`EchoDelayEstimator` shows that the canceller would see a delay
      outside :data:`SAFE_DELAY_S` (devices that misreport their latency).

    It is negative when the devices report less delay than they have: older
    reference is used.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.correction = 0
        """Samples added to the target after a measured echo delay put it out of range."""
        self._ahead: deque[int] = deque(maxlen=LEAD_WINDOW)
        self._settled = False

    def update(self, ahead: int | None, echo_delay: int | None) -> int:
        """The lead for a block with ``ahead`` samples of reference written past its end.

        ``ahead`` is None before any output played, and far below zero while the
        outputs are idle: neither says anything about the buffering, so the
        lead stays where it was (playback that resumes lines up at once).
        """
        corrected = False
        if echo_delay is not None:
            low, high = (position(limit) for limit in SAFE_DELAY_S)
            if not low <= echo_delay + self.samples <= high:
                self.correction = -echo_delay
                corrected = True
        if ahead is None or ahead <= -position(RESYNC_S):
            return self.samples
        self._ahead.append(ahead)
        available = int(np.percentile(self._ahead, 10))
        wanted = min(available, position(TARGET_DELAY_S) + self.correction)
        if not self._settled or corrected:
            self.samples = wanted
            self._settled = len(self._ahead) >= LEAD_SETTLE_BLOCKS
        elif len(self._ahead) == LEAD_WINDOW and np.median(self._ahead) < self.samples:
            self.samples = available
            self._ahead.clear()
        return self.samples


class CaptureProcessor:
    """Runs an engine over microphone blocks, paired with the far end, 10 ms at a time.

    :meth:`process` takes a block read from the input and the position at
    which its first sample was captured, and returns as many processed
    samples. Blocks of whole 10 ms frames (the media layer reads 20 ms) come
    back processed at once; other sizes are delayed by one frame (10 ms). Without
    an engine (processing off) blocks pass through untouched, and the engine
    can be swapped between blocks (settings changed mid-call).
    """

    def __init__(self, far_end: FarEnd, engine: VoiceEngine | None = None) -> None:
        self.far_end = far_end
        self.engine = engine
        self._cursor = Cursor()
        self._lead = _Lead()
        self._seen_end: int | None = None
        self.delay_estimator = EchoDelayEstimator()
        self._near: list[Pcm] = []
        self._near_at: int | None = None
        self._far: list[Pcm] = []
        self._pending = 0
        self._out: deque[Pcm] = deque()
        self._out_size = 0
        self._padded = False
        self.frames_processed = 0

    @property
    def lead_ms(self) -> int:
        """The current lead of the reference over the capture, in ms."""
        return self._lead.samples * 1000 // SAMPLE_RATE

    @property
    def resyncs(self) -> int:
        """How often the capture moved on the time axis."""
        return self._cursor.resyncs

    def set_engine(self, engine: VoiceEngine | None) -> None:
        """Use ``engine`` from the next frame on (None: pass through); closes the old one."""
        old, self.engine = self.engine, engine
        if old is not None and old is not engine:
            old.close()

    def process(self, pcm: Pcm, captured_at: int) -> Pcm:
        """The processed version of ``pcm``, whose first sample was captured at ``captured_at``."""
        length = len(pcm)
        start = self._cursor.place(captured_at, length)
        end = self.far_end.end
        # Only a reference written since the last block says how far ahead the outputs
        # buffer: one that stopped (idle, or starved by a late loop or network) does not.
        written = end is not None and end != self._seen_end
        self._seen_end = end
        lead = self._lead.update(
            end - (start + length) if written and end is not None else None,
            self.delay_estimator.delay,
        )
        if self.engine is None and not self._pending and not self._out_size:
            return pcm  # processing off: nothing to pair, nothing held back
        if not self._pending:
            self._near_at = start
        self._near.append(pcm)
        self._far.append(self.far_end.read(start + lead, length))
        self._pending += length
        while self._pending >= APM_FRAME_SAMPLES:
            near = self._take(self._near, APM_FRAME_SAMPLES)
            far = self._take(self._far, APM_FRAME_SAMPLES)
            self._pending -= APM_FRAME_SAMPLES
            at = self._near_at if self._near_at is not None else start
            self._near_at = at + APM_FRAME_SAMPLES
            engine = self.engine
            if engine is not None:
                self.delay_estimator.add(near, at, self.far_end)
                near = engine.process(near, far, self.engine_delay_ms)
                self.frames_processed += 1
            self._out.append(near)
            self._out_size += len(near)
        return self._pop(length)

    @property
    def engine_delay_ms(self) -> int:
        """The delay the engine sees between a reference frame and its echo (ms), as far
        as known: the lead plus the measured echo delay, within 0-500 ms."""
        seen = self._lead.samples + (self.delay_estimator.delay or 0)
        return min(500, max(0, seen * 1000 // SAMPLE_RATE))

    @staticmethod
    def _take(parts: list[Pcm], samples: int) -> Pcm:
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        head, rest = joined[:samples], joined[samples:]
        parts.clear()
        if len(rest):
            parts.append(rest)
        return head

    def _pop(self, samples: int) -> Pcm:
        if self._out_size < samples:
            # Reads that are not whole frames: hold one frame back, once, so that every
            # later read finds enough (a constant 10 ms, not a gap at every short read).
            pad = APM_FRAME_SAMPLES if not self._padded else samples - self._out_size
            self._padded = True
            self._out.appendleft(np.zeros(max(pad, samples - self._out_size), dtype=np.int16))
            self._out_size += len(self._out[0])
        out = np.zeros(samples, dtype=np.int16)
        filled = 0
        while filled < samples and self._out:
            chunk = self._out[0]
            take = min(samples - filled, len(chunk))
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self._out.popleft()
            else:
                self._out[0] = chunk[take:]
        self._out_size -= samples
        return out

    def close(self) -> None:
        """Release the engine."""
        self.set_engine(None)
