"""Unit tests of the sans-I/O jitter buffer: simulated time only, nothing sleeps.

A small simulator plays sender, network and playout clock: packet ``k`` leaves
at ``k * 20 ms`` with RTP timestamp ``k * 960``, arrives after its network
delay (or never), and the playout clock pops every 20 ms from the buffer's
start time on. A played frame's *latency* is its pop time minus its send time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from softphone.media.jitter_buffer import (
    FrameKind,
    JitterBuffer,
    JitterBufferConfig,
    PlayoutFrame,
    PushResult,
)

pytestmark = pytest.mark.pure

CLOCK = 48000
FRAME = 960
TICK = 0.02
BASE_DELAY = 0.010


def config(**overrides: float | int) -> JitterBufferConfig:
    return JitterBufferConfig(clock_rate=CLOCK, frame_duration=FRAME, **overrides)  # type: ignore[arg-type]


def payload(k: int) -> bytes:
    return k.to_bytes(4, "big")


@dataclass
class Played:
    at: float
    frame: PlayoutFrame


@dataclass
class Sim:
    """Sender, network and playout clock around one :class:`JitterBuffer`."""

    jb: JitterBuffer = field(default_factory=lambda: JitterBuffer(config()))
    origin_ts: int = 0
    ssrc: int = 7
    played: list[Played] = field(default_factory=list)
    results: dict[int, list[PushResult]] = field(default_factory=dict)
    _arrivals: list[tuple[float, int, int, int]] = field(default_factory=list)
    _next_tick: float | None = None
    _now: float = 0.0

    def send(
        self,
        indices: Iterable[int],
        delay: Callable[[int], float | None] = lambda k: BASE_DELAY,
        *,
        ts_of: Callable[[int], int] | None = None,
        ssrc: int | None = None,
    ) -> None:
        """Schedule packets ``indices``; ``delay(k)`` None drops packet k."""
        for k in indices:
            d = delay(k)
            if d is None:
                continue
            ts = ts_of(k) if ts_of else self.origin_ts + k * FRAME
            self._arrivals.append((k * TICK + d, k, ts % (1 << 32), ssrc or self.ssrc))

    def run_until(self, t_end: float) -> None:
        """Deliver arrivals and pop at every playout tick up to ``t_end``, in time order.

        Stops early once every packet has arrived and the buffer is empty, so
        the concealment after the end of the stream does not count.
        """
        self._arrivals.sort()
        while self._arrivals or self.jb.buffered:
            next_arrival = self._arrivals[0][0] if self._arrivals else None
            if self._next_tick is None:
                start = self.jb.start_time()
                if start is not None:
                    self._next_tick = max(start, self._now)
            tick = self._next_tick
            candidates = [t for t in (next_arrival, tick) if t is not None and t <= t_end]
            if not candidates:
                self._now = t_end
                return
            now = min(candidates)
            self._now = now
            if next_arrival is not None and next_arrival == now:
                at, k, ts, ssrc = self._arrivals.pop(0)
                result = self.jb.push(
                    sequence_number=k & 0xFFFF,
                    timestamp=ts,
                    payload=payload(k),
                    now=at,
                    ssrc=ssrc,
                )
                self.results.setdefault(k, []).append(result)
                continue
            assert tick is not None
            frame = self.jb.pop(tick)
            if frame is None and not self.jb.playing:
                self._next_tick = None  # idle: wait for the next start time
            else:
                if frame is not None:
                    self.played.append(Played(tick, frame))
                self._next_tick = tick + TICK

    # ---------------------------------------------------------------- views

    def kinds(self) -> str:
        """One letter per played frame: N normal, C concealed, I inserted."""
        out = []
        for p in self.played:
            if p.frame.kind is FrameKind.NORMAL:
                out.append("N")
            else:
                out.append("I" if p.frame.inserted else "C")
        return "".join(out)

    def normal_indices(self) -> list[int]:
        return [
            int.from_bytes(p.frame.payload, "big")
            for p in self.played
            if p.frame.kind is FrameKind.NORMAL and p.frame.payload is not None
        ]

    def latency(self, k: int) -> float:
        """Pop time minus send time of packet ``k`` (it must have been played)."""
        for p in self.played:
            if p.frame.kind is FrameKind.NORMAL and p.frame.payload == payload(k):
                return p.at - k * TICK
        raise AssertionError(f"packet {k} was not played")


# ===================================================================== basics


def test_steady_stream_plays_every_packet_once_at_the_minimum_delay() -> None:
    sim = Sim()
    sim.send(range(100))
    sim.run_until(2.5)
    assert sim.kinds() == "N" * 100
    assert sim.normal_indices() == list(range(100))
    assert sim.played[0].frame.new_stream and not sim.played[1].frame.new_stream
    # Base delay plus the 20 ms minimum target, for every packet.
    assert {round(sim.latency(k), 6) for k in range(100)} == {BASE_DELAY + 0.020}
    stats = sim.jb.stats
    assert stats.played_units == 100 * FRAME and stats.concealed_units == 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)
    assert stats.target_delay == pytest.approx(0.020)
    assert stats.buffer_delay == pytest.approx(0.020)
    assert stats.delay_sum / stats.played_units == pytest.approx(0.020)


def test_nothing_to_play_before_the_first_packet_is_due() -> None:
    jb = JitterBuffer(config())
    assert jb.pop(0.0) is None and jb.start_time() is None
    jb.push(sequence_number=1, timestamp=0, payload=b"a", now=0.010)
    assert jb.start_time() == pytest.approx(0.030)
    assert jb.pop(0.029) is None and not jb.playing
    frame = jb.pop(0.030)
    assert frame is not None and frame.kind is FrameKind.NORMAL and frame.payload == b"a"
    assert jb.playing and jb.start_time() is None


# ===================================================================== loss


def test_one_lost_packet_is_one_concealed_frame_with_fec_source_and_no_added_latency() -> None:
    sim = Sim()
    sim.send(range(100), lambda k: None if k == 50 else BASE_DELAY)
    sim.run_until(2.5)
    assert sim.kinds() == "N" * 50 + "C" + "N" * 49
    concealed = sim.played[50].frame
    assert concealed.timestamp == 50 * FRAME and concealed.duration == FRAME
    assert concealed.next_payload == payload(51)  # the FEC source
    assert not concealed.inserted
    assert sim.latency(49) == pytest.approx(sim.latency(51))
    stats = sim.jb.stats
    assert stats.concealed_units == FRAME and stats.concealment_events == 1
    assert stats.inserted_units == stats.skipped_units == 0


def test_burst_loss_conceals_each_frame_as_one_event() -> None:
    sim = Sim()
    sim.send(range(100), lambda k: None if 40 <= k < 44 else BASE_DELAY)
    sim.run_until(2.5)
    assert sim.kinds() == "N" * 40 + "CCCC" + "N" * 56
    gap = [p.frame for p in sim.played[40:44]]
    assert [f.next_payload for f in gap] == [None, None, None, payload(44)]
    assert sim.jb.stats.concealment_events == 1
    assert sim.latency(39) == pytest.approx(sim.latency(44))


@pytest.mark.parametrize("loss", [0.01, 0.05, 0.2])
def test_random_loss_never_moves_the_timeline(loss: float) -> None:
    rng = random.Random(4)
    lost = {k for k in range(500) if rng.random() < loss and k not in (0, 499)}
    sim = Sim()
    sim.send(range(500), lambda k: None if k in lost else BASE_DELAY)
    sim.run_until(10.5)
    assert len(sim.kinds()) == 500
    assert sim.kinds().count("C") == len(lost)
    assert {round(sim.latency(k), 6) for k in range(500) if k not in lost} == {0.03}


# ===================================================================== order


def test_reordered_packets_play_in_timestamp_order() -> None:
    sim = Sim(jb=JitterBuffer(config(min_delay=0.04)))
    # Packet 10 is overtaken by 11 (arrives 25 ms late, still within the 40 ms target).
    sim.send(range(30), lambda k: BASE_DELAY + (0.025 if k == 10 else 0.0))
    sim.run_until(1.0)
    assert sim.normal_indices() == list(range(30))
    assert sim.jb.stats.packets_reordered == 1
    assert "C" not in sim.kinds()


def test_duplicates_are_dropped_whether_buffered_or_already_played() -> None:
    jb = JitterBuffer(config())
    push = jb.push
    assert push(sequence_number=1, timestamp=0, payload=b"a", now=0.0) is PushResult.BUFFERED
    assert push(sequence_number=1, timestamp=0, payload=b"a", now=0.001) is PushResult.DUPLICATE
    frame = jb.pop(0.02)
    assert frame is not None and frame.payload == b"a"
    assert push(sequence_number=1, timestamp=0, payload=b"a", now=0.03) is PushResult.DUPLICATE
    assert jb.stats.packets_duplicate == 2 and jb.stats.packets_late == 0


def test_a_packet_later_than_its_slot_is_concealed_then_dropped_as_late() -> None:
    sim = Sim()
    sim.send(range(60), lambda k: BASE_DELAY + (0.2 if k == 30 else 0.0))
    sim.run_until(1.5)
    assert sim.kinds()[30] == "C"
    assert sim.results[30] == [PushResult.LATE]
    assert sim.jb.stats.packets_late == 1
    assert 30 not in sim.normal_indices()


# ===================================================================== adaptation


def _jittery(k: int) -> float:
    """Every 5th packet of 100..299 is 60 ms late: 20 % of packets, a clear jitter."""
    return BASE_DELAY + (0.060 if 100 <= k < 300 and k % 5 == 0 else 0.0)


def test_delay_grows_under_jitter_and_shrinks_back_after_it() -> None:
    sim = Sim()
    sim.send(range(600), _jittery)
    sim.run_until(12.5)
    stats = sim.jb.stats
    baseline = sim.latency(50)
    assert baseline == pytest.approx(0.030)
    # Growing: frames were inserted and the late packets now make it in time.
    assert stats.inserted_units > 0
    during = [sim.latency(k) for k in range(200, 300) if k % 5 == 0]
    assert min(during) > 0.060 + BASE_DELAY
    # Shrinking: once the jitter is out of the history the delay comes back.
    assert stats.skipped_units > 0
    assert sim.latency(599) == pytest.approx(baseline, abs=0.0201)
    # Concealment only while adapting up, never a lasting loss of audio.
    assert sim.kinds()[-150:] == "N" * 150
    assert stats.jitter > 0


def test_target_delay_follows_the_jitter_quantile_within_bounds() -> None:
    jb = JitterBuffer(config(min_delay=0.01, max_delay=0.1, margin=0.0))
    for k in range(100):
        extra = 0.05 if k % 10 == 0 else 0.0
        jb.push(sequence_number=k, timestamp=k * FRAME, payload=b"x", now=k * TICK + extra)
    assert jb.target_delay == pytest.approx(0.05)  # 10 % of packets are 50 ms late
    jb = JitterBuffer(config(min_delay=0.01, max_delay=0.03, margin=0.0))
    for k in range(100):
        extra = 0.05 if k % 10 == 0 else 0.0
        jb.push(sequence_number=k, timestamp=k * FRAME, payload=b"x", now=k * TICK + extra)
    assert jb.target_delay == pytest.approx(0.03)  # clamped


def test_skips_are_spread_out_and_only_where_audio_follows() -> None:
    jb = JitterBuffer(config(accelerate_interval=3))
    # 200 ms of audio arrives at once: the cursor starts far behind its due time.
    for k in range(10):
        jb.push(sequence_number=k, timestamp=k * FRAME, payload=payload(k), now=0.0)
    for k in range(10, 30):
        jb.push(sequence_number=k, timestamp=k * FRAME, payload=payload(k), now=k * TICK)
    frames = [jb.pop(0.2 + n * TICK) for n in range(20)]
    skipping = [n for n, f in enumerate(frames) if f is not None and f.skipped]
    assert skipping and all(b - a > 3 for a, b in itertools.pairwise(skipping))
    assert all(f is not None and f.kind is FrameKind.NORMAL for f in frames)


# ===================================================================== resync and idle


def test_timestamps_wrap_without_a_glitch() -> None:
    sim = Sim(origin_ts=(1 << 32) - 50 * FRAME)
    sim.send(range(100))
    sim.run_until(2.5)
    assert sim.kinds() == "N" * 100 and sim.normal_indices() == list(range(100))


def test_new_ssrc_restarts_the_stream() -> None:
    sim = Sim()
    sim.send(range(50))
    sim.send(range(50, 100), ts_of=lambda k: 123456 + k * FRAME, ssrc=99)
    sim.run_until(2.5)
    assert sim.jb.stats.resyncs == 1
    starts = [n for n, p in enumerate(sim.played) if p.frame.new_stream]
    assert starts[0] == 0 and len(starts) == 2
    assert sim.normal_indices()[-10:] == list(range(90, 100))


def test_a_timestamp_jump_restarts_the_stream_instead_of_minutes_of_concealment() -> None:
    sim = Sim()
    sim.send(range(100), ts_of=lambda k: k * FRAME + (CLOCK * 600 if k >= 50 else 0))
    sim.run_until(2.5)
    assert sim.jb.stats.resyncs == 1
    assert sim.kinds().count("C") <= 2
    assert sim.normal_indices()[-10:] == list(range(90, 100))


def test_a_timestamp_jump_back_restarts_after_a_few_late_packets() -> None:
    sim = Sim()
    sim.send(range(100), ts_of=lambda k: k * FRAME - (20 * FRAME if k >= 50 else 0))
    sim.run_until(2.5)
    assert sim.jb.stats.resyncs == 1
    assert sim.normal_indices()[-10:] == list(range(90, 100))


def test_idle_stops_playout_and_the_next_talkspurt_starts_fresh() -> None:
    sim = Sim()
    sim.send(range(50))
    sim.send(range(150, 200))  # 2 s of nothing in between
    sim.run_until(4.5)
    assert sim.jb.stats.resyncs == 0
    starts = [p for p in sim.played if p.frame.new_stream]
    assert len(starts) == 2
    # Concealment only until the idle timeout, then nothing is played at all.
    assert sim.kinds().count("C") == pytest.approx(50, abs=2)
    assert sim.latency(150) == pytest.approx(sim.latency(0))


def test_capacity_drops_the_oldest_packet() -> None:
    jb = JitterBuffer(config(capacity=5))
    for k in range(8):
        jb.push(sequence_number=k, timestamp=k * FRAME, payload=payload(k), now=0.0)
    assert jb.buffered == 5 and jb.stats.packets_overflow == 3
    frame = jb.pop(1.0)
    assert frame is not None and frame.payload == payload(3)


def test_packets_longer_than_a_frame_advance_the_cursor_by_their_duration() -> None:
    jb = JitterBuffer(config())
    for k in range(10):
        jb.push(
            sequence_number=k,
            timestamp=k * 2 * FRAME,
            payload=payload(k),
            now=k * 0.04,
            duration=2 * FRAME,
        )
    assert jb.buffered_duration == pytest.approx(0.4)
    frames = [jb.pop(0.02 + n * 0.04) for n in range(10)]
    assert [f.payload for f in frames if f] == [payload(k) for k in range(10)]
    assert all(f is not None and f.duration == 2 * FRAME for f in frames)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        JitterBufferConfig(clock_rate=0, frame_duration=960)
    with pytest.raises(ValueError):
        config(min_delay=0.2, max_delay=0.1)
    with pytest.raises(ValueError):
        config(quantile=0.0)
