"""The PreflightTest report: stats summary, call quality band, timings, JS-keyed object.

Pure: everything here is computed from samples, warnings and times handed in.

* :func:`summarize` is the JS ``_getRTCStats``: samples before the first one with a
  numeric ``mos`` > 0 are skipped (the first sample never has a MOS); from there
  ``jitter``, ``mos`` and ``rtt`` each get ``{average, max, min}``, the average
  rounded to 5 significant digits as JS ``Number(x.toPrecision(5))`` does.
* :func:`call_quality` is the JS ``_getCallQuality``, closed intervals included:
  an average in a gap between two bands (4.05, 3.65) is ``degraded``, as in the
  JS SDK.
* :class:`NetworkTiming` records connection milestones the way the JS SDK's
  shims do: a measurement starts at ``connecting``/``checking`` and ends, once, at
  ``connected`` (``stable`` for signaling).
* :class:`PreflightTestReport` is ``PreflightTest.Report``; ``to_dict()`` gives the
  JS object (``callSid``, ``callQuality``, ``networkTiming`` ...), leaving out what
  JS leaves undefined, as ``JSON.stringify`` would.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from decimal import ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import attrs

from softphone.core.rtc_sample import RTCSample, RTCSampleTotals
from softphone.media.pc_diagnostics import IceCandidateStatsReport

__all__ = [
    "CallQuality",
    "NetworkTiming",
    "PreflightTestReport",
    "PreflightWarning",
    "RTCStats",
    "Stats",
    "TimeMeasurement",
    "build_report",
    "call_quality",
    "summarize",
    "to_precision",
]

RTC_WARNING_DESCRIPTION = "Received an RTCWarning. See .rtcWarning for the RTCWarning"
"""The ``description`` of every warning re-emitted from the test call (JS text)."""


class CallQuality(enum.StrEnum):
    """``PreflightTest.CallQuality``: the band of the test call's average MOS."""

    EXCELLENT = "excellent"
    GREAT = "great"
    GOOD = "good"
    FAIR = "fair"
    DEGRADED = "degraded"


def call_quality(mos_average: float) -> CallQuality:
    """The band of an average MOS: > 4.2 excellent, [4.1, 4.2] great, [3.7, 4.0] good,
    [3.1, 3.6] fair, anything else (gaps included) degraded."""
    if mos_average > 4.2:
        return CallQuality.EXCELLENT
    if 4.1 <= mos_average <= 4.2:
        return CallQuality.GREAT
    if 3.7 <= mos_average <= 4.0:
        return CallQuality.GOOD
    if 3.1 <= mos_average <= 3.6:
        return CallQuality.FAIR
    return CallQuality.DEGRADED


def to_precision(value: float, digits: int = 5) -> float:
    """JS ``Number(value.toPrecision(digits))``.

    Rounds the exact binary value to ``digits`` significant digits; an exact tie
    goes to the larger neighbour (JS), not to the even one (Python's ``round``).
    """
    if value == 0 or not math.isfinite(value):
        return value
    exact = Decimal(value)
    quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    rounding = ROUND_HALF_UP if value > 0 else ROUND_HALF_DOWN
    return float(exact.quantize(quantum, rounding=rounding))


@attrs.frozen
class Stats:
    """``PreflightTest.Stats``: one metric over the test call."""

    average: float
    max: float
    min: float

    def to_dict(self) -> dict[str, float]:
        """The JS object."""
        return {"average": self.average, "max": self.max, "min": self.min}


@attrs.frozen
class RTCStats:
    """``PreflightTest.RTCStats``: jitter (ms), MOS and rtt (ms) over the test call."""

    jitter: Stats
    mos: Stats
    rtt: Stats

    def to_dict(self) -> dict[str, dict[str, float]]:
        """The JS object."""
        return {
            "jitter": self.jitter.to_dict(),
            "mos": self.mos.to_dict(),
            "rtt": self.rtt.to_dict(),
        }


def _stats(values: Sequence[float]) -> Stats:
    total = 0.0
    for value in values:  # left to right, as JS reduce adds them
        total += value
    return Stats(average=to_precision(total / len(values)), max=max(values), min=min(values))


def summarize(samples: Sequence[RTCSample]) -> RTCStats | None:
    """The stats of ``samples`` from the first with a numeric ``mos`` > 0; None without one.

    A later sample without ``mos`` or ``rtt`` (JS would count it as 0) is left out
    of that metric.
    """
    first = next((i for i, s in enumerate(samples) if s.mos is not None and s.mos > 0), None)
    if first is None:
        return None
    window = samples[first:]
    jitter = [s.jitter for s in window]
    mos = [s.mos for s in window if s.mos is not None]
    rtt = [s.rtt for s in window if s.rtt is not None]
    if not rtt:
        return None
    return RTCStats(jitter=_stats(jitter), mos=_stats(mos), rtt=_stats(rtt))


@attrs.define
class TimeMeasurement:
    """``TimeMeasurement``: milliseconds since the epoch; ``end``/``duration`` once ended."""

    start: float
    end: float | None = None
    duration: float | None = None

    def finish(self, now: float) -> None:
        """Record the end (the first time only)."""
        if self.end is None:
            self.end = now
            self.duration = now - self.start

    def to_dict(self) -> dict[str, float]:
        """The JS object (``end`` and ``duration`` only once known)."""
        out = {"start": self.start}
        if self.end is not None and self.duration is not None:
            out["end"] = self.end
            out["duration"] = self.duration
        return out


_TIMING_KEYS = {
    "signaling": "signaling",
    "peerConnection": "peer_connection",
    "ice": "ice",
    "dtls": "dtls",
}
_START_STATES = frozenset({"connecting", "checking"})
_END_STATES = frozenset({"connected", "stable"})


@attrs.define
class NetworkTiming:
    """``NetworkTiming``: how long signaling, the peer connection, ICE and DTLS took.

    ``signaling`` starts when the test call has been placed and ends when the
    answer is applied (signaling state ``stable``); the others run from
    ``connecting`` (ICE: ``checking``) to ``connected``. Each ends once: a later
    reconnection changes nothing.
    """

    signaling: TimeMeasurement | None = None
    peer_connection: TimeMeasurement | None = None
    ice: TimeMeasurement | None = None
    dtls: TimeMeasurement | None = None

    def start_signaling(self, now: float) -> None:
        """The test call was just placed (JS: right after ``device.connect()`` resolves)."""
        self.signaling = TimeMeasurement(start=now)

    def on_state(self, kind: str, state: str, now: float) -> None:
        """A state change of ``kind`` (``signaling``, ``peerConnection``, ``ice``, ``dtls``)."""
        attr = _TIMING_KEYS.get(kind)
        if attr is None:
            return
        timing: TimeMeasurement | None = getattr(self, attr)
        if state in _START_STATES and (timing is None or timing.end is None):
            setattr(self, attr, TimeMeasurement(start=now))
        elif state in _END_STATES and timing is not None:
            timing.finish(now)

    def copy(self) -> NetworkTiming:
        """An independent copy (a report keeps the values it was built with)."""
        return NetworkTiming(
            **{
                attr: attrs.evolve(timing) if timing is not None else None
                for attr in _TIMING_KEYS.values()
                for timing in [getattr(self, attr)]
            }
        )

    def to_dict(self) -> dict[str, dict[str, float]]:
        """The JS object: only the measurements that started."""
        out = {}
        for key, attr in _TIMING_KEYS.items():
            timing: TimeMeasurement | None = getattr(self, attr)
            if timing is not None:
                out[key] = timing.to_dict()
        return out


@attrs.frozen
class PreflightWarning:
    """``PreflightTest.Warning``: a warning seen during the test."""

    name: str
    description: str
    rtc_warning: Any = None
    """The test call's warning data (JS ``rtcWarning``), if it had any."""

    def to_dict(self) -> dict[str, Any]:
        """The JS object (no ``rtcWarning`` key when there is none)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.rtc_warning is not None:
            data = self.rtc_warning
            out["rtcWarning"] = data.to_dict() if hasattr(data, "to_dict") else data
        return out


@attrs.frozen(kw_only=True)
class PreflightTestReport:
    """``PreflightTest.Report``: what the test call measured."""

    call_sid: str | None
    call_quality: CallQuality | None
    """Band of ``stats.mos.average``; None without stats."""
    edge: str | None
    """The edge the Device connected to."""
    selected_edge: Any
    """The ``edge`` option, as given."""
    ice_candidate_stats: list[dict[str, Any]]
    selected_ice_candidate_pair_stats: dict[str, dict[str, Any]] | None
    is_turn_required: bool | None
    """True when either selected candidate is a relay; None without a selected pair."""
    network_timing: NetworkTiming
    samples: list[RTCSample]
    stats: RTCStats | None
    test_timing: TimeMeasurement
    totals: RTCSampleTotals | None
    """The last sample's totals."""
    warnings: list[PreflightWarning]

    def to_dict(self) -> dict[str, Any]:
        """The JS report object, keys left undefined by JS left out."""
        out: dict[str, Any] = {}
        if self.call_sid is not None:
            out["callSid"] = self.call_sid
        if self.call_quality is not None:
            out["callQuality"] = str(self.call_quality)
        if self.edge is not None:
            out["edge"] = self.edge
        if self.selected_edge is not None:
            edge = self.selected_edge
            out["selectedEdge"] = list(edge) if isinstance(edge, tuple) else edge
        out["iceCandidateStats"] = list(self.ice_candidate_stats)
        if self.selected_ice_candidate_pair_stats is not None:
            out["selectedIceCandidatePairStats"] = self.selected_ice_candidate_pair_stats
        if self.is_turn_required is not None:
            out["isTurnRequired"] = self.is_turn_required
        out["networkTiming"] = self.network_timing.to_dict()
        out["samples"] = [sample.to_dict() for sample in self.samples]
        if self.stats is not None:
            out["stats"] = self.stats.to_dict()
        out["testTiming"] = self.test_timing.to_dict()
        if self.totals is not None:
            out["totals"] = self.totals.to_dict()
        out["warnings"] = [warning.to_dict() for warning in self.warnings]
        return out


def build_report(
    *,
    call_sid: str | None,
    edge: str | None,
    selected_edge: Any,
    candidates: IceCandidateStatsReport | None,
    network_timing: NetworkTiming,
    samples: Sequence[RTCSample],
    warnings: Sequence[PreflightWarning],
    start_time: float,
    end_time: float,
) -> PreflightTestReport:
    """The report of a completed test (JS ``_getReport``)."""
    stats = summarize(samples)
    pair = candidates.selected_ice_candidate_pair_stats if candidates else None
    turn = None
    if pair is not None:
        turn = any(
            (pair.get(side) or {}).get("candidateType") == "relay"
            for side in ("localCandidate", "remoteCandidate")
        )
    timing = TimeMeasurement(start=start_time)
    timing.finish(end_time)
    return PreflightTestReport(
        call_sid=call_sid,
        call_quality=call_quality(stats.mos.average) if stats is not None else None,
        edge=edge,
        selected_edge=selected_edge,
        ice_candidate_stats=list(candidates.ice_candidate_stats) if candidates else [],
        selected_ice_candidate_pair_stats=pair,
        is_turn_required=turn,
        network_timing=network_timing.copy(),
        samples=list(samples),
        stats=stats,
        test_timing=timing,
        totals=samples[-1].totals if samples else None,
        warnings=list(warnings),
    )
