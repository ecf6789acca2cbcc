"""Voice processing glue without the engine: settings, the time axis, pairing, the gate.

Everything here is fed positions and samples (no clock, no native engine):
the constraints that switch the parts, how the far-end reference and the
microphone are lined up, the echo delay estimator, the gain gate, and the
built-in processor's behaviour when WebRTC's APM is not installed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np
import pytest

from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.core import voice_processor
from softphone.core.voice_processor import VoiceProcessedStream, VoiceProcessing
from softphone.media.voice_processing import (
    APM_FRAME_SAMPLES,
    DRIFT_WINDOW,
    TARGET_DELAY_S,
    CaptureProcessor,
    Cursor,
    EchoAwareGain,
    EchoDelayEstimator,
    FarEnd,
    ReferenceTrack,
    VoiceSettings,
    position,
    voice_settings,
)
from softphone.media.webrtc_apm import INSTALL_HINT, VoiceUnavailableError, WebRtcApm

pytestmark = pytest.mark.pure

FRAME = 960
ALL_ON = VoiceSettings(True, True, True)


def block(value: int, samples: int = FRAME) -> Pcm:
    return np.full(samples, value, dtype=np.int16)


# -- settings ----------------------------------------------------------------------------
def test_settings_follow_the_browser_constraints() -> None:
    assert voice_settings(None, real_device=True) == ALL_ON
    assert voice_settings({}, real_device=False) == VoiceSettings()
    assert not VoiceSettings().enabled and not VoiceSettings().high_pass_filter
    camel = {"echoCancellation": False, "noiseSuppression": {"exact": True}}
    assert voice_settings(camel, real_device=True) == VoiceSettings(False, True, True)
    snake = {"echo_cancellation": True, "auto_gain_control": {"ideal": True}}
    assert voice_settings(snake, real_device=False) == VoiceSettings(True, False, True)
    assert voice_settings(snake, real_device=False).high_pass_filter
    # a value that is no ConstrainBoolean leaves the kind's default
    assert voice_settings({"echoCancellation": "yes"}, real_device=True) == ALL_ON


# -- the time axis -----------------------------------------------------------------------
def test_cursor_stays_contiguous_under_jitter_and_follows_real_moves() -> None:
    cursor = Cursor()
    rng = np.random.default_rng(1)
    starts = [cursor.place(i * FRAME + int(rng.integers(-300, 300)), FRAME) for i in range(40)]
    assert starts == [starts[0] + i * FRAME for i in range(40)]  # jitter ignored
    gap = starts[-1] + FRAME + position(0.5)  # playback resumes after 0.5 s of idle
    assert cursor.place(gap, FRAME) == gap and cursor.resyncs == 1
    # a buffer that grew by 30 ms for good: followed after a window of blocks
    base = gap + FRAME
    shift = position(0.03)
    placed = [cursor.place(base + i * FRAME + shift, FRAME) for i in range(DRIFT_WINDOW)]
    assert placed[:-1] == [base + i * FRAME for i in range(DRIFT_WINDOW - 1)]  # meanwhile
    assert placed[-1] == base + (DRIFT_WINDOW - 1) * FRAME + shift
    assert cursor.resyncs == 1  # a drift, not a jump


def test_reference_track_places_frames_by_when_they_are_heard() -> None:
    track = ReferenceTrack()
    assert not track.read(0, 10).any()  # nothing played yet
    track.push(block(1), 1000)
    track.push(block(2), 1000 + FRAME)
    assert (track.read(1000, 2 * FRAME) == np.repeat([1, 2], FRAME)).all()
    assert not track.read(0, 1000).any() and not track.read(1000 + 2 * FRAME, 100).any()
    # the output idled for a second: that stretch is silence, the new frame where it is heard
    later = 1000 + 2 * FRAME + SAMPLE_RATE
    track.push(block(3), later)
    assert not track.read(1000 + 2 * FRAME, SAMPLE_RATE).any()
    assert (track.read(later, FRAME) == 3).all() and track.resyncs == 1
    # the buffer was flushed: playback moved back; what was queued after it is gone
    flushed = later - position(0.3)
    track.push(block(4), flushed)
    assert (track.read(flushed, FRAME) == 4).all()
    assert not track.read(flushed + FRAME, later + FRAME - flushed - FRAME).any()


def _ms(ms: float) -> int:
    return position(ms / 1000)


def test_reference_restarts_where_an_output_that_ran_dry_plays_again() -> None:
    """A late loop or late call audio: the output plays everything queued, then silence,
    and waits for its 60 ms margin. The next frames are not contiguous with the old ones
    (which the contiguous position alone would assume for up to RESYNC_S)."""
    track = ReferenceTrack()
    for i in range(5):  # written every 20 ms, heard 60 ms later: heard until 160 ms
        track.push(block(1), _ms(60 + 20 * i), _ms(20 * i))
    # written in a burst at 200 ms, when everything had been heard; each one is said to
    # play after the margin (60 ms), but together they fill it: they play at once
    for value in (2, 3, 4, 5):
        track.push(block(value), _ms(260), _ms(200))
    assert not track.read(_ms(160), _ms(40)).any()  # the silence the output played
    expected = np.repeat([2, 3, 4, 5], FRAME)
    assert (track.read(_ms(200), 4 * FRAME) == expected).all()
    assert track.end == _ms(280) and track.resyncs == 1

    # written on time after running dry again: the margin fills with the third frame
    for i, value in enumerate((6, 7, 8)):  # said to play 60 ms after written, while waiting
        track.push(block(value), _ms(400 + 20 * i + 60), _ms(400 + 20 * i))
    track.push(block(9), _ms(460 + 40), _ms(460))  # playing: 40 ms queued ahead of it
    assert (track.read(_ms(440), 4 * FRAME) == np.repeat([6, 7, 8, 9], FRAME)).all()
    for i in range(8):
        track.push(block(10), _ms(520 + 20 * i), _ms(480 + 20 * i))
    # RESTART_S after the restart the margin has filled: jitter is smoothed again
    for i in range(10):
        track.push(block(11), _ms(680 + 20 * i - 15 * (i % 2)), _ms(640 + 20 * i))
    assert (track.read(_ms(680), 10 * FRAME) == 11).all() and track.end == _ms(880)


def test_far_end_sums_outputs_and_forgets_dropped_ones() -> None:
    far = FarEnd()
    a, b = far.track(), far.track()
    a.push(block(100), 0)
    b.push(block(20000), 0)
    b.push(block(20000), FRAME)
    assert (far.read(0, FRAME) == 20100).all()
    b.push(block(20000), 2 * FRAME)
    a.push(block(20000), FRAME)
    assert (far.read(FRAME, FRAME) == 32767).all()  # clipped, not wrapped
    assert far.end == 3 * FRAME
    del b
    assert (far.read(0, FRAME) == 100).all() and far.end == 2 * FRAME


# -- pairing the microphone with the reference -------------------------------------------
class Recorder:
    """An engine that records what it was given and passes the microphone through."""

    def __init__(self) -> None:
        self.pairs: list[tuple[Pcm, Pcm, int]] = []
        self.closed = False

    def process(self, near: Pcm, far: Pcm, delay_ms: int) -> Pcm:
        self.pairs.append((near.copy(), far.copy(), delay_ms))
        return (near // 2).astype(np.int16)

    def close(self) -> None:
        self.closed = True


def _ramp(start: int, samples: int) -> Pcm:
    """Reference whose value says its position (mod 30000)."""
    return (np.arange(start, start + samples) % 30000).astype(np.int16)


def test_reference_leads_the_capture_by_the_target_when_buffers_allow() -> None:
    far = FarEnd()
    track = far.track()
    engine = Recorder()
    processor = CaptureProcessor(far, engine)
    playout = position(0.2)  # the output plays 200 ms after it is written
    for tick in range(60):
        now = tick * FRAME
        track.push(_ramp(now + playout, FRAME), now + playout)
        out = processor.process(block(1000), now)
        assert (out == 500).all()  # processed at once (whole 10 ms frames)
    assert processor.lead_ms == round(TARGET_DELAY_S * 1000)
    _, reference, delay_ms = engine.pairs[-1]
    capture_at = 59 * FRAME + APM_FRAME_SAMPLES
    assert (reference == _ramp(capture_at + position(TARGET_DELAY_S), APM_FRAME_SAMPLES)).all()
    assert delay_ms == round(TARGET_DELAY_S * 1000)


def test_without_reported_delay_the_newest_reference_is_used() -> None:
    far = FarEnd()
    track = far.track()
    engine = Recorder()
    processor = CaptureProcessor(far, engine)
    for tick in range(60):
        now = tick * FRAME
        track.push(_ramp(now, FRAME), now)  # "heard" as it is written
        processor.process(block(1000), now + 100)  # read a little later
    # never asks for reference not written yet: every reference frame is real audio
    assert all(far_frame.any() for _, far_frame, _ in engine.pairs[2:])
    assert processor.lead_ms < 0


def test_the_lead_is_set_once_and_moves_only_when_it_must() -> None:
    far = FarEnd()
    track = far.track()
    processor = CaptureProcessor(far, Recorder())

    def run(blocks: int, playout_s: float, start: int) -> int:
        for tick in range(start, start + blocks):
            now = tick * FRAME
            track.push(block(1), now + position(playout_s))
            processor.process(block(1000), now)
        return start + blocks

    tick = run(20, 0.04, 0)
    assert processor.lead_ms == 40  # all the reference written ahead (< the 120 ms target)
    tick = run(200, 0.1, tick)  # the output's buffer grew: no reason to move (re-converge)
    assert processor.lead_ms == 40
    tick = run(200, 0.01, tick)  # it shrank for good: the reference would not be there
    assert processor.lead_ms == 10


def test_the_lead_never_stays_beyond_the_reference_written() -> None:
    """Set while the output's first frames said 20 ms too much (waiting for its margin),
    the lead then exceeded the reference by 15 ms: the last 15 ms of every reference
    block were silence, and the canceller never converged (1-3 dB in a call)."""
    far = FarEnd()
    track = far.track()
    engine = Recorder()
    processor = CaptureProcessor(far, engine)
    for tick in range(300):
        now = tick * FRAME
        playout = 0.1235 if tick < 24 else 0.1055  # 124 ms, then 106 ms ahead
        track.push(block(7), now + position(playout), now)
        processor.process(block(1000), now)
    assert processor.lead_ms <= 105
    assert all((far_frame == 7).all() for _, far_frame, _ in engine.pairs[-50:])  # no gaps


def test_the_lead_does_not_follow_an_output_starved_for_a_while() -> None:
    """Late call audio: the output gets a frame now and then with little queued, then
    refills. Moving the lead for that would make the canceller re-converge after it."""
    far = FarEnd()
    track = far.track()
    processor = CaptureProcessor(far, Recorder())
    for tick in range(300):
        now = tick * FRAME
        starved = 50 <= tick < 110
        if not starved or tick % 3 == 0:
            track.push(block(1), now + position(0.01 if starved else 0.1), now)
        processor.process(block(1000), now)
        if tick == 49:
            assert processor.lead_ms == 100
    assert processor.lead_ms == 100


def test_odd_block_sizes_and_engine_switches() -> None:
    far = FarEnd()
    processor = CaptureProcessor(far, None)
    assert (processor.process(block(7, 300), 0) == 7).all()  # off: untouched, no delay
    engine = Recorder()
    processor.set_engine(engine)
    out = np.concatenate([processor.process(block(1000, 300), 300 + i * 300) for i in range(8)])
    assert not out[:480].any()  # one frame (10 ms) held back for odd sizes, once
    assert (out[480:] == 500).all() and len(engine.pairs) == 5
    processor.set_engine(None)
    assert engine.closed
    later = processor.process(block(9, 300), 3000)
    assert len(later) == 300


def test_the_echo_delay_is_found_from_the_signals() -> None:
    rng = np.random.default_rng(4)
    far = FarEnd()
    track = far.track()
    estimator = EchoDelayEstimator()
    echo_delay = position(0.35)  # the devices under-report by 350 ms
    bursts = np.repeat(rng.random(2000) > 0.5, 480) * rng.standard_normal(2000 * 480) * 3000
    played = bursts.astype(np.int16)
    for frame in range(600):
        at = frame * APM_FRAME_SAMPLES
        track.push(played[at : at + APM_FRAME_SAMPLES], at)
        mic = (
            played[at - echo_delay : at - echo_delay + APM_FRAME_SAMPLES]
            if at >= echo_delay
            else None
        )
        heard = (mic // 4).astype(np.int16) if mic is not None else block(0, APM_FRAME_SAMPLES)
        estimator.add(heard, at, far)
    assert estimator.delay is not None
    assert abs(estimator.delay - echo_delay) <= position(0.005)
    assert estimator.correlation > 0.9


def test_a_measured_delay_out_of_range_moves_the_reference_back() -> None:
    far = FarEnd()
    track = far.track()
    processor = CaptureProcessor(far, Recorder())
    processor.delay_estimator.delay = position(0.4)  # the canceller would see 520 ms
    for tick in range(10):
        now = tick * FRAME
        track.push(block(1), now + position(0.2))
        processor.process(block(1000), now)
    assert processor.lead_ms == round(TARGET_DELAY_S * 1000) - 400
    assert processor.engine_delay_ms == round(TARGET_DELAY_S * 1000)
    inside = CaptureProcessor(far, Recorder())
    inside.delay_estimator.delay = position(0.05)  # 170 ms: fine, left alone
    inside.process(block(1000), 0)
    assert inside.lead_ms == round(TARGET_DELAY_S * 1000)


def test_gain_control_learns_on_the_near_end_only() -> None:
    gate = EchoAwareGain()
    quiet, speech = block(0, APM_FRAME_SAMPLES), block(3000, APM_FRAME_SAMPLES)
    for _ in range(200):
        assert not gate.far_active(quiet)
        gate.learn(speech, (speech * 2).astype(np.int16))  # the AGC doubles near-end speech
    assert gate.gain_db == pytest.approx(6.02, abs=0.1)
    assert gate.far_active(speech)
    residual = block(10, APM_FRAME_SAMPLES)
    assert (gate.apply(residual) == 20).all()  # the last near-end gain, not more
    for _ in range(39):
        assert gate.far_active(quiet)  # the echo's delay and reverberation
    assert not gate.far_active(quiet)
    gate.learn(block(3, APM_FRAME_SAMPLES), block(3000, APM_FRAME_SAMPLES))  # noise: ignored
    assert gate.gain_db == pytest.approx(6.02, abs=0.1)


# -- the built-in processor --------------------------------------------------------------
class Mic:
    """A capture device: reports its capture delay (voice processing on by default)."""

    capture_delay_s = 0.01

    def read(self, samples: int) -> Pcm:
        return block(1000, samples)

    def close(self) -> None:
        pass


class Tone:
    """A virtual input (no capture timing): off by default."""

    def read(self, samples: int) -> Pcm:
        return block(1000, samples)

    def close(self) -> None:
        pass


def _voice(engines: list[VoiceSettings]) -> VoiceProcessing:
    def factory(settings: VoiceSettings) -> Recorder:
        engines.append(settings)
        return Recorder()

    return VoiceProcessing(engine_factory=factory, clock=lambda: 0.0)


def test_real_devices_are_processed_by_default_and_virtual_inputs_on_request() -> None:
    engines: list[VoiceSettings] = []
    voice = _voice(engines)
    mic = voice.create_processed_stream(Mic())
    assert mic.active and mic.settings == ALL_ON and mic.real_device
    tone = voice.create_processed_stream(Tone())
    assert not tone.active and (tone.read(FRAME) == 1000).all()
    asked = Tone()
    voice.bind(asked, {"echoCancellation": True})
    stream = voice.create_processed_stream(asked)
    assert stream.active and stream.settings == VoiceSettings(echo_cancellation=True)
    assert (stream.read(FRAME) == 500).all()  # through the engine
    assert engines == [ALL_ON, VoiceSettings(echo_cancellation=True)]


def test_reconfigure_switches_every_stream_in_place() -> None:
    engines: list[VoiceSettings] = []
    voice = _voice(engines)
    mic, tone = voice.create_processed_stream(Mic()), voice.create_processed_stream(Tone())
    voice.reconfigure({"echoCancellation": False, "noise_suppression": False})
    assert mic.settings == VoiceSettings(auto_gain_control=True) and mic.active
    voice.reconfigure(
        {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
    )
    assert not mic.active and (mic.read(FRAME) == 1000).all()
    voice.reconfigure(None)  # constraints forgotten: back to each kind's default
    assert mic.active and mic.settings == ALL_ON and not tone.active
    voice.destroy_processed_stream(mic)
    assert not mic.active and voice.streams == [tone]


def test_without_the_binding_one_warning_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)  # "import livekit" fails
    monkeypatch.setattr(voice_processor, "_warned_unavailable", False)
    with pytest.raises(VoiceUnavailableError, match="softphone\\[voice\\]"):
        WebRtcApm(ALL_ON)
    voice = VoiceProcessing(clock=lambda: 0.0)
    with (
        caplog.at_level(logging.WARNING, logger="softphone.audio.voice"),
        pytest.warns(voice_processor.VoiceProcessingWarning) as shown,
    ):
        streams: list[VoiceProcessedStream] = [
            voice.create_processed_stream(Mic()) for _ in range(3)
        ]
        voice.reconfigure({"echoCancellation": True})
    assert len(shown) == 1 and INSTALL_HINT in str(shown[0].message)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert INSTALL_HINT in warnings[0].getMessage()
    assert "Echo cancellation" in warnings[0].getMessage()
    for stream in streams:  # the call goes on, unprocessed
        assert not stream.active and (stream.read(FRAME) == 1000).all()


def test_an_engine_that_fails_leaves_the_microphone_unprocessed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Recorder):
        def process(self, near: Pcm, far: Pcm, delay_ms: int) -> Pcm:
            raise RuntimeError("native failure")

    def factory(settings: VoiceSettings) -> Any:
        return Broken()

    voice = VoiceProcessing(engine_factory=factory, clock=lambda: 0.0)
    stream = voice.create_processed_stream(Mic())
    with caplog.at_level(logging.ERROR, logger="softphone.audio.voice"):
        assert (stream.read(FRAME) == 1000).all()
    assert not stream.active and "voice processing failed" in caplog.text
    assert (stream.read(FRAME) == 1000).all()
