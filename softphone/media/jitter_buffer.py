"""An adaptive audio jitter buffer with a playout clock, sans-I/O.

aiortc's receive buffer is a fixed 80 ms prefetch with no concealment that
gains about 160 ms of latency for good after one lost packet
(aiortc-probe.md §4). This one is fed RTP packets with their arrival time and
asked, at every playout tick, what to play next; it never sleeps, reads a
clock or decodes. The caller (:mod:`softphone.media.playout`) owns the clock,
the decoder and the sink.

How it decides:

* **Timeline.** Every packet's *transit* is ``arrival - timestamp / clock``.
  The smallest transit over the last ``history`` seconds is the path's base
  delay; a packet's *excess* over that base is its jitter. The target delay is
  a high quantile of the excess plus a margin, clamped to
  ``[min_delay, max_delay]``. Frame ``ts`` is due at
  ``ts / clock + base + target``.
* **Playout.** :meth:`JitterBuffer.pop` returns the frame at the playout
  cursor, or a concealment order when it is missing (with the next packet's
  payload when buffered, so an Opus decoder can use its in-band FEC). Loss
  never moves the timeline, so one lost packet costs one concealed frame and
  no latency.
* **Adaptation.** When the cursor's frame would play before its due time, one
  concealment frame is *inserted* (the delay grows by a frame at once); when
  it is more than 1.5 frames late and the buffer holds the following frame
  too, one frame is *skipped* (the delay shrinks by a frame), at most once
  every ``accelerate_interval`` pops. Growing is eager and shrinking lazy,
  and the band between is 1.5 frames wide, so steady streams never oscillate.
* **Late, duplicate, reordered.** A packet behind the cursor is late and
  dropped; a timestamp already buffered or recently played is a duplicate;
  out-of-order arrivals are simply sorted by timestamp.
* **Resync.** A new SSRC, a packet more than ``resync_threshold`` seconds off
  the timeline, or ``late_resync_count`` packets in a row behind the cursor
  restart the stream; silence longer than ``idle_timeout`` stops playout until packets
  come back.

Times are seconds on any monotonic clock; durations inside the buffer are RTP
timestamp units.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "FrameKind",
    "JitterBuffer",
    "JitterBufferConfig",
    "JitterBufferStats",
    "PlayoutFrame",
    "PushResult",
]

_TS_MOD = 1 << 32
_SEQ_MOD = 1 << 16
_RECENT = 64  # timestamps remembered to tell a duplicate from a late packet
_EARLY_TOLERANCE = 0.002
"""Playing a frame this much (seconds) before its due time is still on time."""


@dataclass(frozen=True, slots=True)
class JitterBufferConfig:
    """Tuning of one :class:`JitterBuffer`; times in seconds."""

    clock_rate: int
    """RTP clock rate of the stream (48000 for Opus, 8000 for G.711)."""
    frame_duration: int
    """Duration of one frame in RTP units (20 ms: 960 for Opus, 160 for G.711).

    Concealment and inserted frames are this long; a packet may declare another
    duration when pushed.
    """
    min_delay: float = 0.020
    """Lowest target delay: one 20 ms frame, so a lost packet's successor (and
    its FEC) has arrived by the time the loss is played."""
    max_delay: float = 0.400
    """Highest target delay."""
    margin: float = 0.005
    """Added to the jitter quantile."""
    quantile: float = 0.95
    """Share of packets the target delay should catch in time."""
    history: float = 2.0
    """Seconds of arrivals the base delay and the jitter quantile look at."""
    capacity: int = 100
    """Most packets held; past it the oldest is dropped (counted as overflow)."""
    accelerate_interval: int = 2
    """Pops between two skipped frames, so shrinking the delay is spread out."""
    resync_threshold: float = 1.0
    """A packet this far off the timeline (either way) restarts the stream."""
    late_resync_count: int = 5
    """This many packets in a row behind the cursor (late, or repeating played ones)
    restart the stream: the sender's timestamps jumped back."""
    idle_timeout: float = 1.0
    """No packet for this long and nothing buffered: playout stops."""

    def __post_init__(self) -> None:
        if self.clock_rate <= 0 or self.frame_duration <= 0:
            raise ValueError("clock_rate and frame_duration must be positive")
        if not 0 <= self.min_delay <= self.max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        if not 0 < self.quantile <= 1:
            raise ValueError("quantile must be in (0, 1]")


class PushResult(enum.Enum):
    """What :meth:`JitterBuffer.push` did with a packet."""

    BUFFERED = "buffered"
    LATE = "late"
    DUPLICATE = "duplicate"


class FrameKind(enum.Enum):
    """What the caller should produce for one :class:`PlayoutFrame`."""

    NORMAL = "normal"
    """Decode ``payload``."""
    CONCEAL = "conceal"
    """Synthesize ``duration`` units: loss concealment, or FEC from ``next_payload``."""


@dataclass(frozen=True, slots=True)
class PlayoutFrame:
    """One step of playout returned by :meth:`JitterBuffer.pop`."""

    kind: FrameKind
    timestamp: int
    """Extended (unwrapped) RTP timestamp where this frame starts."""
    duration: int
    """Length in RTP units."""
    payload: bytes | None = None
    """The packet payload (NORMAL only)."""
    next_payload: bytes | None = None
    """CONCEAL only: the payload of the packet that directly follows the gap, if
    buffered; an Opus decoder recovers the lost frame from its in-band FEC."""
    inserted: bool = False
    """CONCEAL only: not a loss but an extra frame that grows the delay."""
    skipped: tuple[bytes, ...] = ()
    """Payloads dropped right before this frame to shrink the delay. Decode and
    discard them when the codec is stateful, so the decoder stays continuous."""
    new_stream: bool = False
    """First frame after a start or resync: reset the decoder."""


@dataclass(slots=True)
class JitterBufferStats:
    """Cumulative counters of one :class:`JitterBuffer` (durations in RTP units)."""

    packets_received: int = 0
    packets_late: int = 0
    packets_duplicate: int = 0
    packets_reordered: int = 0
    packets_overflow: int = 0
    resyncs: int = 0
    played_units: int = 0
    """Units played from received packets."""
    concealed_units: int = 0
    """Units concealed because their packet was missing."""
    concealment_events: int = 0
    """Runs of consecutive concealed frames."""
    inserted_units: int = 0
    """Units inserted to grow the delay."""
    skipped_units: int = 0
    """Units skipped to shrink the delay."""
    delay_sum: float = 0.0
    """Sum over played units of the time each spent buffered (seconds x units)."""
    jitter: float = 0.0
    """RFC 3550 interarrival jitter estimate, seconds."""
    target_delay: float = 0.0
    """Current target delay, seconds."""
    buffer_delay: float = 0.0
    """How long the last played packet waited in the buffer, seconds."""


@dataclass(slots=True)
class _Entry:
    payload: bytes
    duration: int
    arrival: float


@dataclass(slots=True)
class _Arrival:
    at: float
    transit: float


@dataclass(slots=True)
class _Unwrapper:
    """Extends wrapping RTP counters (timestamps, sequence numbers) to plain ints."""

    modulus: int
    highest: int | None = None

    def extend(self, value: int) -> int:
        if self.highest is None:
            self.highest = value
            return value
        half = self.modulus // 2
        diff = (value - self.highest) % self.modulus
        if diff >= half:
            diff -= self.modulus
        extended = self.highest + diff
        self.highest = max(self.highest, extended)
        return extended


@dataclass(slots=True)
class _Stream:
    """Per-stream state, replaced on every resync."""

    ssrc: int | None = None
    ts: _Unwrapper = field(default_factory=lambda: _Unwrapper(_TS_MOD))
    seq: _Unwrapper = field(default_factory=lambda: _Unwrapper(_SEQ_MOD))
    highest_seq: int | None = None
    frames: dict[int, _Entry] = field(default_factory=dict)
    cursor: int | None = None
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=_RECENT))
    arrivals: deque[_Arrival] = field(default_factory=deque)
    last_arrival: tuple[float, int] | None = None
    consecutive_late: int = 0


class JitterBuffer:
    """Adaptive jitter buffer for one received audio stream (see the module doc)."""

    def __init__(self, config: JitterBufferConfig) -> None:
        self.config = config
        self.stats = JitterBufferStats(target_delay=config.min_delay)
        self._s = _Stream()
        self._last_packet_at: float | None = None
        self._pops_since_skip = 0
        self._concealing = False
        self._dirty = True
        self._base = 0.0

    # ------------------------------------------------------------------ properties

    @property
    def playing(self) -> bool:
        """True between the first played frame of a stream and an idle stop or resync."""
        return self._s.cursor is not None

    @property
    def buffered(self) -> int:
        """Packets held and not yet played."""
        return len(self._s.frames)

    @property
    def buffered_duration(self) -> float:
        """Seconds of audio held from the cursor to the end of the newest packet."""
        s = self._s
        if not s.frames:
            return 0.0
        last = max(s.frames)
        start = s.cursor if s.cursor is not None else min(s.frames)
        return max(0, last + s.frames[last].duration - start) / self.config.clock_rate

    @property
    def target_delay(self) -> float:
        """The delay (seconds) the buffer steers towards, over the path's base delay."""
        self._refresh()
        return self.stats.target_delay

    def start_time(self) -> float | None:
        """When the first frame of a stream that has not started yet is due; None otherwise.

        A playout clock that is free to choose its phase starts ticking here.
        """
        s = self._s
        if s.cursor is not None or not s.frames:
            return None
        return self._due(min(s.frames))

    # ------------------------------------------------------------------ input

    def push(
        self,
        *,
        sequence_number: int,
        timestamp: int,
        payload: bytes,
        now: float,
        ssrc: int | None = None,
        duration: int | None = None,
    ) -> PushResult:
        """Add one received packet; ``duration`` in RTP units defaults to one frame."""
        self.stats.packets_received += 1
        self._last_packet_at = now
        entry = _Entry(payload, duration or self.config.frame_duration, now)
        result = self._push(sequence_number, timestamp, entry, ssrc)
        if result is None:
            self._reset(count=True)
            result = self._push(sequence_number, timestamp, entry, ssrc)
            assert result is not None  # a fresh stream accepts anything
        return result

    def _push(
        self, sequence_number: int, timestamp: int, entry: _Entry, ssrc: int | None
    ) -> PushResult | None:
        """Buffer one packet; None when the stream must restart first."""
        config = self.config
        s = self._s
        if ssrc is not None and s.ssrc is not None and ssrc != s.ssrc:
            return None
        now = entry.arrival
        ts = s.ts.extend(timestamp)
        transit = now - ts / config.clock_rate
        if s.arrivals:
            self._refresh()
            if abs(transit - self._base) > config.resync_threshold:
                return None
        behind = s.cursor is not None and ts < s.cursor
        if behind and s.consecutive_late + 1 >= config.late_resync_count:
            return None
        s.ssrc = ssrc
        seq = s.seq.extend(sequence_number)
        self._track_jitter(now, ts)
        self._track_arrival(now, transit)
        if behind:
            s.consecutive_late += 1
        if ts in s.frames or ts in s.recent:
            self.stats.packets_duplicate += 1
            return PushResult.DUPLICATE
        if s.highest_seq is not None and seq < s.highest_seq:
            self.stats.packets_reordered += 1
        s.highest_seq = seq if s.highest_seq is None else max(s.highest_seq, seq)
        if behind:
            self.stats.packets_late += 1
            return PushResult.LATE
        s.consecutive_late = 0
        s.frames[ts] = entry
        if len(s.frames) > config.capacity:
            del s.frames[min(s.frames)]
            self.stats.packets_overflow += 1
        return PushResult.BUFFERED

    # ------------------------------------------------------------------ output

    def pop(self, now: float) -> PlayoutFrame | None:
        """The next frame to play at ``now`` (the nominal time of this playout tick).

        None means nothing to play: no stream yet, still buffering the first
        frame of a stream, or idle (no packet for ``idle_timeout``).
        """
        config = self.config
        s = self._s
        if (
            self._last_packet_at is not None
            and now - self._last_packet_at > config.idle_timeout
            and not s.frames
        ):
            if s.cursor is not None or s.arrivals:
                self._reset(count=False)  # the next talkspurt starts a fresh timeline
            return None
        new_stream = False
        if s.cursor is None:
            if not s.frames:
                return None
            first = min(s.frames)
            if now < self._due(first):
                return None
            s.cursor = first
            new_stream = True
        self._drop_stale()
        self._pops_since_skip += 1
        frame_units = config.frame_duration
        frame_s = frame_units / config.clock_rate
        lag = now - self._due(s.cursor)

        if not new_stream and lag < -_EARLY_TOLERANCE:
            self.stats.inserted_units += frame_units
            return PlayoutFrame(
                FrameKind.CONCEAL,
                s.cursor,
                frame_units,
                next_payload=None,
                inserted=True,
            )

        skipped: list[bytes] = []
        head = s.frames.get(s.cursor)
        if (
            not new_stream
            and lag > 1.5 * frame_s
            and head is not None
            and self._pops_since_skip > config.accelerate_interval
            and (s.cursor + head.duration) in s.frames
        ):
            del s.frames[s.cursor]
            self._remember(s.cursor)
            skipped.append(head.payload)
            self.stats.skipped_units += head.duration
            s.cursor += head.duration
            self._pops_since_skip = 0

        entry = s.frames.pop(s.cursor, None)
        if entry is not None:
            self._remember(s.cursor)
            frame = PlayoutFrame(
                FrameKind.NORMAL,
                s.cursor,
                entry.duration,
                payload=entry.payload,
                skipped=tuple(skipped),
                new_stream=new_stream,
            )
            waited = max(0.0, now - entry.arrival)
            self.stats.buffer_delay = waited
            self.stats.delay_sum += waited * entry.duration
            self.stats.played_units += entry.duration
            self._concealing = False
            s.cursor += entry.duration
            return frame

        following = min((ts for ts in s.frames if ts > s.cursor), default=None)
        duration = frame_units if following is None else min(frame_units, following - s.cursor)
        after = s.frames.get(s.cursor + duration)
        frame = PlayoutFrame(
            FrameKind.CONCEAL,
            s.cursor,
            duration,
            next_payload=after.payload if after is not None else None,
            skipped=tuple(skipped),
            new_stream=new_stream,
        )
        self.stats.concealed_units += duration
        if not self._concealing:
            self.stats.concealment_events += 1
            self._concealing = True
        s.cursor += duration
        return frame

    # ------------------------------------------------------------------ internals

    def _due(self, ts: int) -> float:
        """When frame ``ts`` should play: its base arrival time plus the target delay."""
        self._refresh()
        return ts / self.config.clock_rate + self._base + self.stats.target_delay

    def _track_arrival(self, now: float, transit: float) -> None:
        arrivals = self._s.arrivals
        arrivals.append(_Arrival(now, transit))
        horizon = now - self.config.history
        while len(arrivals) > 1 and arrivals[0].at < horizon:
            arrivals.popleft()
        self._dirty = True

    def _refresh(self) -> None:
        """Recompute the base delay and the target delay from the arrival history."""
        if not self._dirty:
            return
        self._dirty = False
        config = self.config
        arrivals = self._s.arrivals
        if not arrivals:
            self._base = 0.0
            self.stats.target_delay = config.min_delay
            return
        transits = sorted(a.transit for a in arrivals)
        self._base = transits[0]
        index = min(len(transits) - 1, max(0, math.ceil(config.quantile * len(transits)) - 1))
        target = transits[index] - self._base + config.margin
        self.stats.target_delay = min(config.max_delay, max(config.min_delay, target))

    def _track_jitter(self, now: float, ts: int) -> None:
        """RFC 3550 §6.4.1 interarrival jitter, in seconds."""
        s = self._s
        if s.last_arrival is not None:
            last_now, last_ts = s.last_arrival
            d = (now - last_now) - (ts - last_ts) / self.config.clock_rate
            self.stats.jitter += (abs(d) - self.stats.jitter) / 16
        s.last_arrival = (now, ts)

    def _remember(self, ts: int) -> None:
        self._s.recent.append(ts)

    def _drop_stale(self) -> None:
        """Drop buffered frames the cursor has passed (overlapping packet durations)."""
        s = self._s
        assert s.cursor is not None
        for ts in [ts for ts in s.frames if ts < s.cursor]:
            del s.frames[ts]
            self.stats.packets_late += 1

    def _reset(self, *, count: bool) -> None:
        """Forget the stream (timeline, buffered packets); ``count`` it as a resync."""
        if count:
            self.stats.resyncs += 1
        self._s = _Stream()
        self._concealing = False
        self._dirty = True
