"""One call's quality watch: media snapshots in, ``sample`` / ``warning`` events out. Pure.

The Call polls its peer connection once a second and hands the flat snapshot
(:meth:`PeerConnection.get_stats`, seconds and cumulative counters) to
:meth:`CallQuality.process` with ``now``. This module converts the snapshot to
the JS raw values (milliseconds), runs the :class:`StatsMonitor`, enables its
warnings 5 s after the Call was created (JS: "the first seconds are choppy"),
filters what the app is told (no ``constant-audio-input-level`` while muted),
and names the low-bytes warnings the call machine needs for ICE-aware recovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from softphone.core.rtc_sample import RawStats, RTCSample
from softphone.core.rtc_warning import LOW_BYTES_WARNING_NAMES, is_emitted_to_app
from softphone.core.stats_monitor import (
    Sample,
    StatsMonitor,
    Thresholds,
    Warning,
    WarningCleared,
    warnings_enabled_at,
)


def raw_stats(snapshot: Mapping[str, Any]) -> RawStats:
    """The JS raw values (§ "raw values") from our peer connection's snapshot.

    ``rtt`` comes from RTCP receiver reports (remote-inbound ``roundTripTime``),
    else from the selected candidate pair's ``currentRoundTripTime``. ``jitter`` is
    the RFC 3550 interarrival jitter our jitter buffer measured on the packets it
    took in, else aiortc's. Both are seconds in the snapshot and milliseconds here.
    """
    rtt = _number(snapshot.get("rtt"))
    if rtt is None:
        pair = snapshot.get("selectedCandidatePair")
        if isinstance(pair, Mapping):
            rtt = _number(pair.get("currentRoundTripTime"))
    jitter = _number(snapshot.get("jitterBufferJitter"))
    if jitter is None:  # no receive path of ours: aiortc's inbound-rtp value
        jitter = _number(snapshot.get("jitter")) or 0.0
    codec = snapshot.get("codecName")
    return RawStats(
        timestamp=float(snapshot.get("timestamp") or 0.0),
        codec_name=codec if isinstance(codec, str) else None,
        rtt=rtt * 1000.0 if rtt is not None else None,
        jitter=jitter * 1000.0,
        packets_lost=max(int(snapshot.get("packetsLost") or 0), 0),
        packets_received=int(snapshot.get("packetsReceived") or 0),
        bytes_received=int(snapshot.get("bytesReceived") or 0),
        packets_sent=int(snapshot.get("packetsSent") or 0),
        bytes_sent=int(snapshot.get("bytesSent") or 0),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@attrs.frozen
class EmitSample:
    """Emit ``sample`` with this sample; the call's codec is ``codec``."""

    sample: RTCSample
    codec: str


@attrs.frozen
class EmitWarning:
    """Emit ``warning(name, data)`` (``data`` is the JS warning data object)."""

    name: str
    data: dict[str, Any]


@attrs.frozen
class EmitWarningCleared:
    """Emit ``warning-cleared(name)``."""

    name: str


@attrs.frozen
class PublishWarning:
    """Publish a quality warning raised or cleared to insights (all of them, muted or not:
    the builder knows what JS leaves out)."""

    stat: str
    name: str
    threshold: float | None
    value: Any
    cleared: bool


@attrs.frozen
class LowBytes:
    """A low-bytes warning was raised or cleared: the call machine's recovery needs it."""

    name: str
    active: bool


QualityOutput = EmitSample | EmitWarning | EmitWarningCleared | PublishWarning | LowBytes


class CallQuality:
    """The quality watch of one call (created with the Call, fed once media flows)."""

    def __init__(self, created_at: float, thresholds: Thresholds | None = None) -> None:
        self.monitor = StatsMonitor(thresholds)
        self.monitor.disable_warnings()
        self._enable_at = warnings_enabled_at(created_at)

    def add_volume(self, input_level: float, output_level: float) -> None:
        """One audio-level reading per direction (0..32767), for the next sample."""
        self.monitor.add_volume(input_level, output_level)

    def process(
        self, snapshot: Mapping[str, Any], now: float, *, muted: bool
    ) -> list[QualityOutput]:
        """One second's snapshot: what the Call emits (and tells its machine), in order."""
        if not self.monitor.warnings_enabled and now >= self._enable_at:
            self.monitor.enable_warnings()
        out: list[QualityOutput] = []
        for output in self.monitor.process(raw_stats(snapshot), now):
            match output:
                case Sample(sample):
                    out.append(EmitSample(sample, (sample.codec_name or "").lower()))
                case Warning(name, data):
                    value = data.values if data.values is not None else data.value
                    threshold = data.threshold.value
                    out.append(PublishWarning(data.name, name, threshold, value, False))
                    if is_emitted_to_app(name, muted=muted):
                        out.append(EmitWarning(name, data.to_dict()))
                    if name in LOW_BYTES_WARNING_NAMES:
                        out.append(LowBytes(name, True))
                case WarningCleared(name, stat, threshold):
                    out.append(PublishWarning(stat, name, threshold, None, True))
                    if is_emitted_to_app(name, muted=muted):
                        out.append(EmitWarningCleared(name))
                    if name in LOW_BYTES_WARNING_NAMES:
                        out.append(LowBytes(name, False))
        return out


__all__ = [
    "CallQuality",
    "EmitSample",
    "EmitWarning",
    "EmitWarningCleared",
    "LowBytes",
    "PublishWarning",
    "QualityOutput",
    "raw_stats",
]
