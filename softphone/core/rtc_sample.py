"""The once-a-second call quality ``sample``: raw stats in, the JS ``RTCSample`` out.

:class:`RawStats` holds the cumulative values read from one stats report (JS
``getRTCStats``); :func:`create_sample` turns it, the previous sample and the
audio levels seen since then into an :class:`RTCSample` with per-interval deltas,
loss fractions, carried-over rtt and MOS (JS ``StatsMonitor._createSample``).
:meth:`RTCSample.to_dict` gives the exact JS object for apps and logs that
expect the JS shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from softphone.core.mos import calculate_mos

__all__ = ["RTCSample", "RTCSampleTotals", "RawStats", "create_sample", "js_round", "mean"]


@attrs.frozen
class RawStats:
    """Cumulative values of one stats report (JS ``getRTCStats`` result).

    Counters start at zero, as the JS SDK does for reports that lack the
    ``inbound-rtp`` / ``outbound-rtp`` entries before ICE connects.
    """

    timestamp: float
    """Report time in milliseconds (the stats entries' ``timestamp``)."""
    codec_name: str | None = None
    """Codec subtype of the outbound stream (``PCMU``, ``opus``); None before one exists."""
    rtt: float | None = None
    """Round-trip time in ms (remote-inbound ``roundTripTime`` or the selected pair's)."""
    jitter: float = 0.0
    """Inbound jitter in ms."""
    packets_lost: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0


@attrs.frozen
class RTCSampleTotals:
    """Cumulative counters since the call's media started (JS ``RTCSampleTotals``)."""

    bytes_received: int
    bytes_sent: int
    packets_lost: int
    packets_lost_fraction: float
    """Cumulative lost / (received + lost) in percent; 100 while no inbound packet exists."""
    packets_received: int
    packets_sent: int

    def to_dict(self) -> dict[str, Any]:
        """The JS ``totals`` object (camelCase keys)."""
        return {
            "bytesReceived": self.bytes_received,
            "bytesSent": self.bytes_sent,
            "packetsLost": self.packets_lost,
            "packetsLostFraction": self.packets_lost_fraction,
            "packetsReceived": self.packets_received,
            "packetsSent": self.packets_sent,
        }


@attrs.frozen
class RTCSample:
    """One second of call quality, as the JS SDK's ``sample`` event carries it.

    Counters (bytes, packets) are deltas over the interval since the previous
    sample; ``totals`` holds the cumulative values.
    """

    audio_input_level: int
    """Rounded mean of the input levels (0..32767) reported during the interval; 0 if none."""
    audio_output_level: int
    """Same for the output (remote) audio."""
    bytes_received: int
    bytes_sent: int
    codec_name: str | None
    jitter: float
    """Inbound jitter in ms (the raw value, not a delta)."""
    mos: float | None
    """Mean opinion score; None on the first sample and while rtt is unknown."""
    packets_lost: int
    packets_lost_fraction: float
    """Interval loss in percent of inbound packets; 0 when none arrived or were lost."""
    packets_received: int
    packets_sent: int
    rtt: float | None
    """Round-trip time in ms; the previous sample's when this report has none."""
    timestamp: float
    """The stats report's time in ms."""
    totals: RTCSampleTotals

    def to_dict(self) -> dict[str, Any]:
        """The JS ``RTCSample`` object: camelCase keys, nested ``totals``."""
        return {
            "audioInputLevel": self.audio_input_level,
            "audioOutputLevel": self.audio_output_level,
            "bytesReceived": self.bytes_received,
            "bytesSent": self.bytes_sent,
            "codecName": self.codec_name,
            "jitter": self.jitter,
            "mos": self.mos,
            "packetsLost": self.packets_lost,
            "packetsLostFraction": self.packets_lost_fraction,
            "packetsReceived": self.packets_received,
            "packetsSent": self.packets_sent,
            "rtt": self.rtt,
            "timestamp": self.timestamp,
            "totals": self.totals.to_dict(),
        }


def js_round(value: float) -> int:
    """JS ``Math.round``: halves round up (2.5 -> 3, -2.5 -> -2), unlike Python's ``round``."""
    return math.floor(value + 0.5)


def mean(values: Sequence[float]) -> float:
    """JS ``util.average``: the arithmetic mean, 0 for no values."""
    return sum(values) / len(values) if values else 0.0


def create_sample(
    raw: RawStats,
    previous: RTCSample | None,
    input_levels: Sequence[float] = (),
    output_levels: Sequence[float] = (),
) -> RTCSample:
    """Build the sample for ``raw`` (JS ``StatsMonitor._createSample``).

    ``previous`` is the last sample (None for the first one); deltas are taken
    against its totals, so the first sample's deltas equal the raw counters.
    ``input_levels`` / ``output_levels`` are the levels (0..32767) reported
    since the previous sample.
    """
    before = previous.totals if previous is not None else None
    packets_lost = raw.packets_lost - (before.packets_lost if before else 0)
    packets_received = raw.packets_received - (before.packets_received if before else 0)
    inbound = packets_received + packets_lost
    fraction = packets_lost / inbound * 100 if inbound > 0 else 0.0

    total_inbound = raw.packets_received + raw.packets_lost
    total_fraction = raw.packets_lost / total_inbound * 100 if total_inbound > 0 else 100.0

    rtt = raw.rtt if raw.rtt is not None or previous is None else previous.rtt

    return RTCSample(
        audio_input_level=js_round(mean(input_levels)),
        audio_output_level=js_round(mean(output_levels)),
        bytes_received=raw.bytes_received - (before.bytes_received if before else 0),
        bytes_sent=raw.bytes_sent - (before.bytes_sent if before else 0),
        codec_name=raw.codec_name,
        jitter=raw.jitter,
        mos=calculate_mos(rtt, raw.jitter, fraction if previous is not None else None),
        packets_lost=packets_lost,
        packets_lost_fraction=fraction,
        packets_received=packets_received,
        packets_sent=raw.packets_sent - (before.packets_sent if before else 0),
        rtt=rtt,
        timestamp=raw.timestamp,
        totals=RTCSampleTotals(
            bytes_received=raw.bytes_received,
            bytes_sent=raw.bytes_sent,
            packets_lost=raw.packets_lost,
            packets_lost_fraction=total_fraction,
            packets_received=raw.packets_received,
            packets_sent=raw.packets_sent,
        ),
    )
