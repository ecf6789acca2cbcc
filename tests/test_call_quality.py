"""A call's quality watch: snapshot conversion and warning rules (pure), samples on a real call."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from recorders import EventLog, eventually
from test_rtc_sample import JS_SAMPLE_KEYS

from softphone.audio_backends import ToneSource
from softphone.core.call_quality import (
    CallQuality,
    EmitSample,
    EmitWarning,
    EmitWarningCleared,
    LowBytes,
    PublishWarning,
    raw_stats,
)
from softphone.core.call_volume import CallVolume, OutputTap, VolumeReading
from softphone.core.device import Device
from softphone.core.rtc_sample import RTCSample

DeviceFactory = Callable[..., Device]


def snapshot(second: int, **overrides: Any) -> dict[str, Any]:
    """A healthy second of a 50-packets-a-second call, cumulative as get_stats gives it."""
    base: dict[str, Any] = {
        "timestamp": 1_000_000.0 + second * 1000,
        "codecName": "PCMU",
        "packetsSent": 50 * second,
        "bytesSent": 8000 * second,
        "packetsReceived": 50 * second,
        "bytesReceived": 8000 * second,
        "packetsLost": 0,
        "jitter": 0.002,
        "rtt": 0.020,
    }
    base.update(overrides)
    return base


@pytest.mark.pure
def test_raw_stats_are_in_milliseconds_with_the_pair_rtt_as_fallback() -> None:
    raw = raw_stats(snapshot(3))
    assert raw.rtt == pytest.approx(20.0) and raw.jitter == pytest.approx(2.0)
    assert raw.codec_name == "PCMU" and raw.packets_received == 150
    fallback = raw_stats(snapshot(3, rtt=None, selectedCandidatePair={"currentRoundTripTime": 0.1}))
    assert fallback.rtt == pytest.approx(100.0)
    assert raw_stats(snapshot(3, rtt=None)).rtt is None
    assert raw_stats({}).packets_received == 0
    ours = raw_stats(snapshot(3, jitterBufferJitter=0.0125))  # our jitter buffer's
    assert ours.jitter == pytest.approx(12.5)


@pytest.mark.pure
def test_samples_carry_the_js_keys_and_the_codec_lower_case() -> None:
    quality = CallQuality(created_at=0.0)
    first = quality.process(snapshot(1), 1.0, muted=False)
    second = quality.process(snapshot(2), 2.0, muted=False)
    assert isinstance(first[-1], EmitSample) and isinstance(second[-1], EmitSample)
    assert second[-1].codec == "pcmu"
    sample = second[-1].sample
    assert isinstance(sample, RTCSample)
    assert set(sample.to_dict()) == JS_SAMPLE_KEYS
    assert sample.packets_received == 50 and sample.packets_lost_fraction == 0
    assert sample.mos is not None and sample.mos > 4.3


def run_seconds(
    quality: CallQuality, start: int, stop: int, muted: bool = False, **overrides: Any
) -> list[Any]:
    out: list[Any] = []
    for second in range(start, stop):
        out += quality.process(snapshot(second, **overrides), float(second), muted=muted)
    return out


@pytest.mark.pure
def test_warnings_wait_five_seconds_after_the_call_was_created() -> None:
    """JS: warnings disabled at construction, enabled 5000 ms later (not at 4990 ms)."""
    quality = CallQuality(created_at=0.0)
    early = run_seconds(quality, 1, 5, rtt=0.9)  # a terrible rtt from the start
    assert not [o for o in early if isinstance(o, EmitWarning)]
    late = run_seconds(quality, 5, 9, rtt=0.9)
    assert [o.name for o in late if isinstance(o, EmitWarning)] == ["high-rtt"]


@pytest.mark.pure
def test_low_bytes_warnings_go_to_the_machine_too() -> None:
    quality = CallQuality(created_at=0.0)
    run_seconds(quality, 1, 6)
    frozen = {"packetsReceived": 250, "bytesReceived": 40000}  # nothing arrives any more
    outputs = run_seconds(quality, 6, 12, **frozen)
    raised = [o for o in outputs if isinstance(o, EmitWarning)]
    assert "low-bytes-received" in [o.name for o in raised]
    assert LowBytes("low-bytes-received", True) in outputs
    data = next(o.data for o in raised if o.name == "low-bytes-received")
    assert data["name"] == "bytesReceived" and data["threshold"]["name"] == "min"
    recovered: list[Any] = []
    for second in range(12, 25):
        moving = snapshot(second, packetsReceived=250 + 50 * second, bytesReceived=8000 * second)
        recovered += quality.process(moving, float(second), muted=False)
    assert EmitWarningCleared("low-bytes-received") in recovered
    assert LowBytes("low-bytes-received", False) in recovered


async def test_a_real_call_emits_a_sample_a_second_with_every_js_key(
    make_device: DeviceFactory,
) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([440.0]))
    call = await alice.connect(params={"To": "echo"})
    log = EventLog(call, "sample", "accept")
    await log.wait_for("accept", timeout=15)
    await log.wait_for("sample", count=3, timeout=15)
    samples = log.args("sample")
    times = [args[0].timestamp for args in samples]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # JS: one sample per 1000 ms (never faster; a loaded machine may stretch it)
    assert min(gaps) >= 950 and sum(gaps) / len(gaps) < 2000, gaps
    last = samples[-1][0]
    assert set(last.to_dict()) == JS_SAMPLE_KEYS
    assert last.packets_sent > 30 and last.packets_received > 30  # 50 packets/s each way
    assert last.packets_lost_fraction < 5
    # RTT needs an RTCP report on our sender report (each side sends one every 0.5-1.5 s):
    # on a loaded machine the first may come after the third sample
    for count in range(4, 12):
        if last.rtt is not None:
            break
        await log.wait_for("sample", count=count, timeout=5)
        last = log.args("sample")[-1][0]
    assert last.rtt is not None and 0 <= last.rtt < 200  # loopback
    assert last.mos is not None and last.mos > 4.0
    assert call.codec in ("opus", "pcmu")
    call.disconnect()


@pytest.mark.pure
def test_the_volume_meter_reads_silence_as_zero_and_a_tone_as_loud() -> None:
    meter = CallVolume()
    assert meter.read() == VolumeReading(0.0, 0.0, 0.0, 0.0)
    tone = ToneSource([1000.0]).read(960)
    meter.push_input(tone)
    loud = meter.read()
    assert loud.input_volume > 0.15 and loud.input_level > 10000
    assert loud.output_volume == 0 and loud.output_level == 0
    meter.push_input(np.zeros(960, dtype=np.int16))
    falling = meter.read()
    assert 0 < falling.input_volume < loud.input_volume  # JS smoothing 0.3 on the event
    assert falling.input_level == 0  # the monitor's analyser has none
    OutputTap(meter).write(tone)
    assert meter.read().output_volume > 0.15


async def test_a_real_call_emits_volume_twenty_times_a_second(
    make_device: DeviceFactory,
) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([440.0]))
    call = await alice.connect(params={"To": "echo"})
    log = EventLog(call, "volume", "accept", "sample")
    await log.wait_for("accept", timeout=15)
    started = asyncio.get_running_loop().time()
    await log.wait_for("sample", count=2, timeout=15)
    seconds = asyncio.get_running_loop().time() - started
    volumes = log.args("volume")
    assert 10 * seconds <= len(volumes) <= 21 * seconds + 2  # every 50 ms
    assert max(v[0] for v in volumes) > 0.15  # our tone (-10 dBFS)
    assert max(v[1] for v in volumes) > 0.15  # the echo of it
    assert log.args("sample")[-1][0].audio_input_level > 1000
    call.mute()
    count = len(log.args("volume"))
    await log.wait_for("volume", count=count + 10, timeout=5)
    assert log.args("volume")[-1][0] < 0.05  # muted: silence is sent, and metered
    call.disconnect()


async def test_device_input_volume_meters_a_file_input_stream_during_a_call(
    make_device: DeviceFactory,
) -> None:
    """``device.audio`` ``inputVolume`` also reads a ``file_input_stream`` (the call's input)."""
    source = ToneSource([440.0])
    alice = make_device("alice", file_input_stream=source)
    assert alice.audio is not None
    volumes: list[float] = []
    alice.audio.on("inputVolume", volumes.append)
    call = await alice.connect(params={"To": "echo"})
    await call.wait_for("accept", timeout=15)
    await eventually(lambda: len(volumes) > 20)
    assert max(volumes) > 0.15
    call.disconnect()
    assert source.read(960).any()  # the app's own stream stays open after the call


@pytest.mark.pure
def test_constant_output_level_goes_to_insights_only_and_input_not_while_muted() -> None:
    """JS: ``constant-audio-output-level`` is never emitted; the input one not while muted."""

    def run(muted: bool) -> list[Any]:
        quality = CallQuality(created_at=0.0)
        outputs: list[Any] = []
        for second in range(1, 18):
            for _ in range(20):
                quality.add_volume(1000.0, 1000.0)  # levels that never move
            outputs += quality.process(snapshot(second), float(second), muted=muted)
        return outputs

    loud = run(muted=False)
    published = {o.name for o in loud if isinstance(o, PublishWarning) and not o.cleared}
    assert {"constant-audio-input-level", "constant-audio-output-level"} <= published
    emitted = {o.name for o in loud if isinstance(o, EmitWarning)}
    assert "constant-audio-input-level" in emitted
    assert "constant-audio-output-level" not in emitted
    muted = run(muted=True)
    assert "constant-audio-input-level" not in {o.name for o in muted if isinstance(o, EmitWarning)}
