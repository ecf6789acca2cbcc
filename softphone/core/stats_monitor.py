"""The call quality monitor (JS ``StatsMonitor``), sans-I/O.

The Call polls its stats once a second (:data:`SAMPLE_INTERVAL_MS`) and feeds
each report to :meth:`StatsMonitor.process` with the current time; audio levels
arrive in between through :meth:`StatsMonitor.add_volume`. ``process`` returns
what the JS monitor would emit for that poll, in the JS order: the warnings
raised or cleared by the new sample first, then the sample itself.

Warnings follow the JS default thresholds (:data:`DEFAULT_THRESHOLDS`) and
rules: a stat is skipped while its window holds a missing value, an active
warning is not raised twice, and a clear needs the warning to be at least
:data:`WARNING_TIMEOUT_MS` old. Warning names are the app-facing ones
(``high-rtt``); whether the Call passes one on to the app is
:func:`~softphone.core.rtc_warning.is_emitted_to_app`.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import attrs

from softphone.core.rtc_sample import RawStats, RTCSample, create_sample, mean
from softphone.core.rtc_warning import ThresholdData, WarningData, warning_name

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SAMPLE_COUNT_CLEAR",
    "SAMPLE_COUNT_METRICS",
    "SAMPLE_COUNT_RAISE",
    "SAMPLE_INTERVAL_MS",
    "VOLUME_INTERVAL_MS",
    "WARNINGS_ENABLED_AFTER_MS",
    "WARNING_TIMEOUT_MS",
    "Output",
    "Sample",
    "StatsMonitor",
    "ThresholdOption",
    "Thresholds",
    "Warning",
    "WarningCleared",
    "warnings_enabled_at",
]

SAMPLE_COUNT_METRICS = 5
"""JS ``SAMPLE_COUNT_METRICS``: the smallest sample buffer (and default window) size."""

SAMPLE_COUNT_CLEAR = 0
"""JS ``SAMPLE_COUNT_CLEAR``: default ``clearCount`` (at most this many crossings clears)."""

SAMPLE_COUNT_RAISE = 3
"""JS ``SAMPLE_COUNT_RAISE``: default ``raiseCount`` (at least this many crossings raises)."""

SAMPLE_INTERVAL_MS = 1000
"""JS ``SAMPLE_INTERVAL``: the Call polls stats (and gets one sample) this often."""

WARNING_TIMEOUT_MS = 5000
"""JS ``WARNING_TIMEOUT``: a warning cannot clear until it is this old."""

WARNINGS_ENABLED_AFTER_MS = 5000
"""JS ``METRICS_DELAY`` (call.ts): warnings are off for this long after the Call is created."""

VOLUME_INTERVAL_MS = 50
"""JS ``VOLUME_INTERVAL_MS`` (peerconnection.ts): the ``volume`` event and
:meth:`StatsMonitor.add_volume` cadence while media flows."""


@attrs.frozen
class ThresholdOption:
    """One threshold on one stat (JS ``StatsMonitor.ThresholdOption``); unset fields are None.

    ``max`` / ``min`` raise when at least ``raise_count`` of the last
    ``sample_count`` values lie strictly above / below the value, and clear when
    at most ``clear_count`` do. ``max_average`` / ``min_average`` compare the
    window's mean (clearing at ``clear_value``), ``max_duration`` counts
    identical consecutive values, ``min_standard_deviation`` looks at every raw
    audio level of the last ``sample_count`` intervals.
    """

    max: float | None = None
    min: float | None = None
    max_average: float | None = None
    min_average: float | None = None
    max_duration: int | None = None
    min_standard_deviation: float | None = None
    clear_value: float | None = None
    raise_count: int | None = None
    clear_count: int | None = None
    sample_count: int | None = None


Thresholds = Mapping[str, ThresholdOption | tuple[ThresholdOption, ...]]
"""Thresholds per stat (JS stat names); a tuple is the JS array form (several thresholds)."""

DEFAULT_THRESHOLDS: Thresholds = MappingProxyType(
    {
        "audioInputLevel": ThresholdOption(min_standard_deviation=327.67, sample_count=10),
        "audioOutputLevel": ThresholdOption(min_standard_deviation=327.67, sample_count=10),
        "bytesReceived": ThresholdOption(clear_count=2, min=1, raise_count=3, sample_count=3),
        "bytesSent": ThresholdOption(clear_count=2, min=1, raise_count=3, sample_count=3),
        "jitter": ThresholdOption(max=30),
        "mos": ThresholdOption(min=3),
        "packetsLostFraction": (
            ThresholdOption(max=1),
            ThresholdOption(clear_value=1, max_average=3, sample_count=7),
        ),
        "rtt": ThresholdOption(max=400),
    }
)
"""JS ``DEFAULT_THRESHOLDS`` (ms for rtt/jitter, percent for loss, bytes per second,
0..32767 levels: 327.67 is 1 % of full scale)."""

_STAT_FIELDS: Mapping[str, str] = {
    "audioInputLevel": "audio_input_level",
    "audioOutputLevel": "audio_output_level",
    "bytesReceived": "bytes_received",
    "bytesSent": "bytes_sent",
    "jitter": "jitter",
    "mos": "mos",
    "packetsLost": "packets_lost",
    "packetsLostFraction": "packets_lost_fraction",
    "packetsReceived": "packets_received",
    "packetsSent": "packets_sent",
    "rtt": "rtt",
}
"""Sample fields a threshold may watch: JS stat name -> :class:`RTCSample` attribute."""

_KIND_FIELDS: Mapping[str, str] = {
    "max": "max",
    "min": "min",
    "maxAverage": "max_average",
    "minAverage": "min_average",
    "maxDuration": "max_duration",
    "minStandardDeviation": "min_standard_deviation",
}
"""JS threshold kind -> :class:`ThresholdOption` field."""

_LEVEL_STATS = ("audioInputLevel", "audioOutputLevel")
"""Stats whose raw per-interval level values are kept for ``minStandardDeviation``."""


@attrs.frozen
class Sample:
    """A new sample (JS ``sample`` event); the Call re-emits it and takes its codec."""

    sample: RTCSample


@attrs.frozen
class Warning:
    """A warning was raised (JS ``warning``): ``name`` is the app-facing name (``high-rtt``).

    The name follows the JS event; it shadows the builtin ``Warning`` class only
    inside modules that import it.
    """

    name: str
    data: WarningData


@attrs.frozen
class WarningCleared:
    """An active warning cleared (JS ``warning-cleared``).

    ``stat`` and ``threshold`` say which check cleared (insights publish them).
    """

    name: str
    stat: str = attrs.field(default="", eq=False)
    threshold: float | None = attrs.field(default=None, eq=False)


Output = Sample | Warning | WarningCleared


def warnings_enabled_at(created_at: float) -> float:
    """When the Call enables monitor warnings: :data:`WARNINGS_ENABLED_AFTER_MS` after creation.

    Times are in seconds on the caller's clock (e.g. ``loop.time()``).
    """
    return created_at + WARNINGS_ENABLED_AFTER_MS / 1000


def _population_std_dev(values: Sequence[float]) -> float | None:
    """JS ``calculateStandardDeviation``: population standard deviation, None for no values."""
    if not values:
        return None
    average = sum(values) / len(values)
    return math.sqrt(sum((value - average) ** 2 for value in values) / len(values))


class StatsMonitor:
    """Turns raw stats into samples and quality warnings. Pure: time comes in as ``now``.

    ``now`` is in seconds on any monotonic clock (e.g. ``loop.time()``); sample
    timestamps come from the stats themselves. Warnings start enabled, as in JS;
    the Call disables them at creation and enables them at
    :func:`warnings_enabled_at`.
    """

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        """``thresholds`` replace the defaults stat by stat (JS ``{...DEFAULT, ...given}``)."""
        merged = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        unknown = sorted(set(merged) - set(_STAT_FIELDS))
        if unknown:
            raise ValueError(f"no such sample stat: {', '.join(unknown)}")
        self._thresholds: dict[str, tuple[ThresholdOption, ...]] = {
            stat: option if isinstance(option, tuple) else (option,)
            for stat, option in merged.items()
        }
        # JS reads `sampleCount` off each entry; an array has none, so the loss
        # thresholds' 7 does not count here.
        self._max_sample_count = max(
            [SAMPLE_COUNT_METRICS]
            + [
                option.sample_count
                for option in merged.values()
                if isinstance(option, ThresholdOption) and option.sample_count
            ]
        )
        self._samples: deque[RTCSample] = deque(maxlen=self._max_sample_count)
        self._volumes: dict[str, list[float]] = {stat: [] for stat in _LEVEL_STATS}
        # Enough level sets for the longest window any threshold asks for.
        longest = max(
            [self._max_sample_count]
            + [o.sample_count or 0 for options in self._thresholds.values() for o in options]
        )
        self._level_sets: dict[str, deque[list[float]]] = {
            stat: deque(maxlen=longest) for stat in _LEVEL_STATS
        }
        self._streaks: dict[str, int] = {}
        self._active: dict[tuple[str, str], float] = {}
        self._warnings_enabled = True

    @property
    def warnings_enabled(self) -> bool:
        """Whether samples are checked against the thresholds."""
        return self._warnings_enabled

    @property
    def last_sample(self) -> RTCSample | None:
        """The most recent sample, None before the first."""
        return self._samples[-1] if self._samples else None

    def add_volume(self, input_level: float, output_level: float) -> None:
        """Record one audio level reading per direction (0..32767, JS ``addVolumes``)."""
        self._volumes["audioInputLevel"].append(input_level)
        self._volumes["audioOutputLevel"].append(output_level)

    def enable_warnings(self) -> None:
        """Check samples against the thresholds from the next sample on."""
        self._warnings_enabled = True

    def disable_warnings(self) -> None:
        """Stop checking, and forget active warnings (no ``WarningCleared`` is produced)."""
        if self._warnings_enabled:
            self._active.clear()
        self._warnings_enabled = False

    def has_active_warning(self, stat: str, threshold_kind: str) -> bool:
        """JS ``hasActiveWarning``: e.g. ``("rtt", "max")``."""
        return (stat, threshold_kind) in self._active

    def process(self, raw: RawStats, now: float) -> list[Output]:
        """Take one stats report; return the warnings it raises or clears, then its sample."""
        levels = {stat: self._volumes[stat] for stat in _LEVEL_STATS}
        self._volumes = {stat: [] for stat in _LEVEL_STATS}
        sample = create_sample(
            raw, self.last_sample, levels["audioInputLevel"], levels["audioOutputLevel"]
        )
        for stat in _LEVEL_STATS:
            self._level_sets[stat].append(levels[stat])
        self._samples.append(sample)

        outputs: list[Output] = []
        if self._warnings_enabled:
            for stat, options in self._thresholds.items():
                for option in options:
                    outputs.extend(self._check(stat, option, now))
        outputs.append(Sample(sample))
        return outputs

    def _check(self, stat: str, option: ThresholdOption, now: float) -> list[Output]:
        """Apply one threshold to the sample window (JS ``_raiseWarningsForStat``)."""
        # JS treats 0 like unset here (`limit.sampleCount || default`).
        sample_count = option.sample_count or self._max_sample_count
        window = tuple(self._samples)[-sample_count:]
        raw_values = [getattr(sample, _STAT_FIELDS[stat]) for sample in window]
        if any(value is None for value in raw_values):
            return []  # not enough information to raise or clear anything
        values: tuple[float, ...] = tuple(raw_values)

        out: list[Output] = []
        if option.max is not None:
            crossed = sum(1 for value in values if value > option.max)
            out += self._check_count(stat, "max", option, crossed, window, values, now)
        if option.min is not None:
            crossed = sum(1 for value in values if value < option.min)
            out += self._check_count(stat, "min", option, crossed, window, values, now)
        if option.max_duration is not None and len(self._samples) > 1:
            out += self._check_streak(stat, option.max_duration, now)
        if option.min_standard_deviation is not None:
            checked = self._check_std_dev(stat, option, option.min_standard_deviation, now)
            if checked is None:
                return out  # JS returns here, skipping this threshold's average checks
            out += checked
        if len(values) >= sample_count:
            out += self._check_average(stat, option, window, values, now)
        return out

    def _check_count(
        self,
        stat: str,
        kind: str,
        option: ThresholdOption,
        crossed: int,
        window: tuple[RTCSample, ...],
        values: tuple[float, ...],
        now: float,
    ) -> list[Output]:
        """``max`` / ``min``: raise or clear on how many window values crossed the limit."""
        # JS treats 0 like unset here (`limit.raiseCount || SAMPLE_COUNT_RAISE`).
        if crossed >= (option.raise_count or SAMPLE_COUNT_RAISE):
            return self._raise(stat, kind, self._data(stat, kind, values, window), now)
        if crossed <= (option.clear_count or SAMPLE_COUNT_CLEAR):
            return self._clear(stat, kind, now)
        return []

    def _check_streak(self, stat: str, max_duration: int, now: float) -> list[Output]:
        """``maxDuration``: how many samples in a row repeated the previous value."""
        previous, current = (getattr(s, _STAT_FIELDS[stat]) for s in tuple(self._samples)[-2:])
        previous_streak = self._streaks.get(stat, 0)
        streak = previous_streak + 1 if previous == current else 0
        self._streaks[stat] = streak
        if streak >= max_duration:
            data = self._data(stat, "maxDuration", value=streak)
            return self._raise(stat, "maxDuration", data, now)
        if streak == 0:
            return self._clear(stat, "maxDuration", now)
        return []

    def _check_std_dev(
        self, stat: str, option: ThresholdOption, minimum: float, now: float
    ) -> list[Output] | None:
        """``minStandardDeviation`` over every raw level of the last intervals.

        None when there is nothing to judge yet (too few intervals, no levels).
        """
        sets = list(self._level_sets.get(stat, ()))
        if option.sample_count and len(sets) < option.sample_count:
            return None
        sample_count = option.sample_count or self._max_sample_count
        deviation = _population_std_dev([level for s in sets[-sample_count:] for level in s])
        if deviation is None:
            return None
        kind = "minStandardDeviation"
        if deviation < minimum:
            return self._raise(stat, kind, self._data(stat, kind, value=deviation), now)
        return self._clear(stat, kind, now)

    def _check_average(
        self,
        stat: str,
        option: ThresholdOption,
        window: tuple[RTCSample, ...],
        values: tuple[float, ...],
        now: float,
    ) -> list[Output]:
        """``maxAverage`` / ``minAverage``: the window's mean against the limit and clear value."""
        average = mean(values)
        out: list[Output] = []
        for kind, limit, beyond in (
            ("maxAverage", option.max_average, operator.gt),
            ("minAverage", option.min_average, operator.lt),
        ):
            if limit is None:
                continue
            # JS: `limit.clearValue || limit.maxAverage`, so a clear value of 0 means unset.
            clear_at = option.clear_value or limit
            if beyond(average, limit):
                out += self._raise(stat, kind, self._data(stat, kind, values, window), now)
            elif not beyond(average, clear_at):
                out += self._clear(stat, kind, now)
        return out

    def _data(
        self,
        stat: str,
        kind: str,
        values: tuple[float, ...] | None = None,
        samples: tuple[RTCSample, ...] | None = None,
        *,
        value: float | None = None,
    ) -> WarningData:
        """The warning object, with the value of the first threshold of that kind on ``stat``."""
        limit = next(
            (
                getattr(option, _KIND_FIELDS[kind])
                for option in self._thresholds[stat]
                if getattr(option, _KIND_FIELDS[kind]) is not None
            ),
            None,
        )
        return WarningData(
            name=stat,
            threshold=ThresholdData(name=kind, value=limit),
            values=values,
            samples=samples,
            value=value,
        )

    def _raise(self, stat: str, kind: str, data: WarningData, now: float) -> list[Output]:
        if (stat, kind) in self._active:
            return []
        self._active[(stat, kind)] = now
        return [Warning(warning_name(stat, kind), data)]

    def _clear(self, stat: str, kind: str, now: float) -> list[Output]:
        raised_at = self._active.get((stat, kind))
        if raised_at is None or now - raised_at < WARNING_TIMEOUT_MS / 1000:
            return []
        del self._active[(stat, kind)]
        return [WarningCleared(warning_name(stat, kind), stat, self._limit(stat, kind))]

    def _limit(self, stat: str, kind: str) -> float | None:
        """The threshold value of ``stat``'s ``kind`` check (None if it has none)."""
        field = _KIND_FIELDS.get(kind)
        for option in self._thresholds.get(stat, ()):
            value = getattr(option, field, None) if field else None
            if isinstance(value, int | float):
                return float(value)
        return None
