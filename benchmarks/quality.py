"""Call setup time, speech quality (PESQ) under loss, and mouth-to-ear delay around loss.

Device -> gateway -> Device on 127.0.0.1, the gateway in its own process. The
caller plays the espeak-ng clip (:mod:`benchmarks.speech`) through a
:class:`TimedSource`; its media runs through a :class:`~benchmarks.udp_relay.UdpRelay`
that drops RTP on the way to the gateway; the callee records with a :class:`TimedSink`.
One call per loss condition, all conditions of a codec at once.

Loss starts :data:`LOSS_START_PACKET` packets (2 s) into the call, so the
delay measured before it is clean. "Delay after" is measured 1 s after the
first lost packet: the target is that it is back at "delay before".
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

from benchmarks.harness import (
    Callee,
    GatewayProcess,
    Path,
    device_receive_path,
    make_device,
    plain_factory,
    relayed_factory,
)
from benchmarks.speech import pesq_score
from benchmarks.udp_relay import Policy, UdpRelay, drop_rtp, loss, pass_all
from softphone.audio_backends.analysis import align_offset
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.media.latency import TimedSink, TimedSource, delay_at

LOSS_START_PACKET = 100
"""Random loss begins at this packet (2 s of 20 ms packets into the call)."""
BURST_START_PACKET = 210
"""The 4-packet burst hits speech 4.2 s into the clip (3 s is a pause between sentences)."""
BURST_LENGTH = 4


@dataclass(frozen=True)
class Condition:
    """A named loss pattern on the caller's media."""

    name: str
    percent: float | None = None
    """Random loss in %, or None for the 4-packet burst."""

    def policy(self, seed: int) -> Policy:
        """The relay policy for the caller-to-gateway direction."""
        if self.percent is None:
            return drop_rtp(range(BURST_START_PACKET, BURST_START_PACKET + BURST_LENGTH))
        if self.percent == 0:
            return pass_all
        return loss(self.percent, seed=seed, after=LOSS_START_PACKET)

    @property
    def first_loss_packet(self) -> int | None:
        if self.percent is None:
            return BURST_START_PACKET
        return LOSS_START_PACKET if self.percent else None


CONDITIONS = (
    Condition("0 %", 0.0),
    Condition("1 %", 1.0),
    Condition("3 %", 3.0),
    Condition("5 %", 5.0),
    Condition("burst 4", None),
)


@dataclass(frozen=True)
class QualityResult:
    """One call of the quality run."""

    path: Path
    codec: str
    condition: str
    pesq: float
    """PESQ-WB for Opus, PESQ-NB for PCMU."""
    delay_before: float | None
    """Mouth-to-ear delay (s) before the first loss."""
    delay_after: float | None
    """Delay 1 s after the first loss (before any loss for 0 %: the end of the clip)."""
    dropped: int


def _delay_near(
    source: TimedSource, sink: TimedSink, recording: Pcm, clip_s: float
) -> float | None:
    """The delay of the output audio that plays clip second ``clip_s`` (median of 3 windows)."""
    offset = _clip_offset(source.clip, recording)
    values = []
    for shift in (-0.25, 0.0, 0.25):
        index = int((clip_s + shift) * SAMPLE_RATE) + offset
        measured = delay_at(source, sink, index, window_s=0.25, max_delay_s=0.6)
        if measured is not None:
            values.append(measured.seconds)
    return statistics.median(values) if values else None


def _clip_offset(clip: Pcm, recording: Pcm) -> int:
    """Where clip sample 0 lies in the recording (output index = clip index + offset)."""
    return align_offset(clip, recording, max_lag_s=len(recording) / SAMPLE_RATE)


async def run_quality(
    path: Path, codec: str, clip: Pcm, conditions: tuple[Condition, ...] = CONDITIONS
) -> list[QualityResult]:
    """One call per condition at once through a fresh gateway on ``path``."""
    receive_path = device_receive_path(path)
    results: list[QualityResult] = []
    async with GatewayProcess(path) as gateway:
        relays: list[UdpRelay] = []
        sources: list[TimedSource] = []
        sinks: list[TimedSink] = []
        callers = []
        callees: list[Callee] = []
        for index, condition in enumerate(conditions):
            relay = UdpRelay()
            relay.a_to_b.policy = condition.policy(seed=index + 1)
            relays.append(relay)
            source, sink = TimedSource(clip), TimedSink()
            sources.append(source)
            sinks.append(sink)
            callee = Callee(
                make_device(
                    gateway.url,
                    f"bob{index}",
                    codec=codec,
                    pc_factory=plain_factory(codec=codec, receive_path=receive_path),
                ),
                sink=sink,
            )
            callees.append(callee)
            callers.append(
                make_device(
                    gateway.url,
                    f"alice{index}",
                    codec=codec,
                    source=source,
                    pc_factory=relayed_factory(relay, codec=codec, receive_path=receive_path),
                )
            )
        try:
            await asyncio.gather(*(c.device.register() for c in callees))
            calls = [
                await caller.connect(params={"To": f"client:bob{index}"})
                for index, caller in enumerate(callers)
            ]
            await asyncio.gather(*(c.accepted.wait() for c in callees))
            target = len(clip) + SAMPLE_RATE // 2
            deadline = asyncio.get_running_loop().time() + len(clip) / SAMPLE_RATE + 20
            while any(s.samples < target for s in sinks):
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            for call in calls:
                call.disconnect()
        finally:
            for device in [*callers, *(c.device for c in callees)]:
                await device.destroy()
            for relay in relays:
                relay.close()
    for condition, source, sink, relay in zip(conditions, sources, sinks, relays, strict=True):
        recording = sink.pcm()
        score = pesq_score(clip, recording, wideband=codec == "opus")
        first = condition.first_loss_packet
        before = _delay_near(source, sink, recording, 1.2)
        after_s = (first * 0.02 + 1.0) if first is not None else len(clip) / SAMPLE_RATE - 1.5
        after = _delay_near(source, sink, recording, after_s)
        results.append(
            QualityResult(
                path, codec, condition.name, score, before, after, relay.a_to_b.rtp_dropped
            )
        )
    return results


async def run_setup(path: Path, count: int) -> list[float]:
    """Seconds from ``connect()`` to the caller's ``accept``, ``count`` calls in a row."""
    receive_path = device_receive_path(path)
    times: list[float] = []
    loop = asyncio.get_running_loop()
    async with GatewayProcess(path) as gateway:
        callee = Callee(
            make_device(
                gateway.url,
                "bob",
                codec="opus",
                pc_factory=plain_factory(codec="opus", receive_path=receive_path),
            )
        )
        caller = make_device(
            gateway.url,
            "alice",
            codec="opus",
            pc_factory=plain_factory(codec="opus", receive_path=receive_path),
        )
        try:
            await callee.device.register()
            for _ in range(count):
                start = loop.time()
                call = await caller.connect(params={"To": "client:bob"})
                await call.wait_for("accept", timeout=10)
                times.append(loop.time() - start)
                call.disconnect()
                while caller.is_busy or callee.device.is_busy:
                    await asyncio.sleep(0.01)
        finally:
            await caller.destroy()
            await callee.device.destroy()
    return times
