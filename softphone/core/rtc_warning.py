"""Quality warning payloads and names, as the JS SDK's Call hands them to apps.

The stats monitor speaks in stats (``rtt``) and threshold kinds (``max``); apps
see warning names (``high-rtt``). :func:`warning_name` is the Call's mapping
(JS ``WARNING_PREFIXES`` / ``WARNING_NAMES`` / ``MULTIPLE_THRESHOLD_WARNING_NAMES``)
and :func:`is_emitted_to_app` the Call's filter (JS ``Call._emitWarning``).
:class:`WarningData` is the data object of ``call.on('warning', (name, data))``.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from softphone.core.rtc_sample import RTCSample

__all__ = [
    "CONSTANT_AUDIO_INPUT_LEVEL",
    "CONSTANT_AUDIO_OUTPUT_LEVEL",
    "LOW_BYTES_WARNING_NAMES",
    "MULTIPLE_THRESHOLD_WARNING_NAMES",
    "WARNING_NAMES",
    "WARNING_PREFIXES",
    "ThresholdData",
    "WarningData",
    "is_emitted_to_app",
    "warning_name",
]

WARNING_PREFIXES: dict[str, str] = {
    "max": "high-",
    "maxAverage": "high-",
    "maxDuration": "constant-",
    "min": "low-",
    "minStandardDeviation": "constant-",
}
"""JS ``WARNING_PREFIXES``: warning name prefix per threshold kind."""

WARNING_NAMES: dict[str, str] = {
    "audioInputLevel": "audio-input-level",
    "audioOutputLevel": "audio-output-level",
    "bytesReceived": "bytes-received",
    "bytesSent": "bytes-sent",
    "jitter": "jitter",
    "mos": "mos",
    "rtt": "rtt",
}
"""JS ``WARNING_NAMES``: warning name stem per stat."""

MULTIPLE_THRESHOLD_WARNING_NAMES: dict[str, dict[str, str]] = {
    "packetsLostFraction": {"max": "packet-loss", "maxAverage": "packets-lost-fraction"},
}
"""JS ``MULTIPLE_THRESHOLD_WARNING_NAMES``: stems for stats watched by several thresholds."""

CONSTANT_AUDIO_INPUT_LEVEL = "constant-audio-input-level"
CONSTANT_AUDIO_OUTPUT_LEVEL = "constant-audio-output-level"

LOW_BYTES_WARNING_NAMES = frozenset({"low-bytes-received", "low-bytes-sent"})
"""Raising one of these also reports the ``LowBytes`` media failure (JS ``Call`` constructor)."""


def warning_name(stat: str, threshold_kind: str) -> str:
    """The app-facing name of a monitor warning: ``("rtt", "max")`` -> ``"high-rtt"``.

    Stats and kinds the JS tables lack (only reachable with custom thresholds)
    get ``low-`` for ``minAverage`` and a kebab-case stem, where JS would say
    ``undefined``.
    """
    prefix = WARNING_PREFIXES.get(threshold_kind, "low-")
    by_kind = MULTIPLE_THRESHOLD_WARNING_NAMES.get(stat)
    if by_kind is not None and threshold_kind in by_kind:
        return prefix + by_kind[threshold_kind]
    stem = WARNING_NAMES.get(stat) or re.sub(r"(?<!^)([A-Z])", r"-\1", stat).lower()
    return prefix + stem


def is_emitted_to_app(name: str, *, muted: bool) -> bool:
    """Whether the Call emits ``warning`` / ``warning-cleared`` for ``name``.

    ``constant-audio-output-level`` goes to insights only (JS: "avoid false
    positives"), and ``constant-audio-input-level`` is expected, so silent,
    while the call is muted.
    """
    if name == CONSTANT_AUDIO_OUTPUT_LEVEL:
        return False
    return not (name == CONSTANT_AUDIO_INPUT_LEVEL and muted)


@attrs.frozen
class ThresholdData:
    """Which threshold fired: its kind (``max``, ``maxAverage``...) and its value."""

    name: str
    value: float | None


@attrs.frozen
class WarningData:
    """The monitor's warning object (JS ``RTCWarning``), passed to ``warning`` listeners.

    Count and average thresholds carry the evaluated window (``values`` and the
    ``samples`` they came from); standard-deviation and streak thresholds carry
    one ``value``.
    """

    name: str
    """The stat (JS name): ``rtt``, ``packetsLostFraction``, ``audioInputLevel``..."""
    threshold: ThresholdData
    values: tuple[float, ...] | None = None
    samples: tuple[RTCSample, ...] | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JS object; keys absent in JS (no ``values``, no ``value``) are left out."""
        out: dict[str, Any] = {}
        if self.values is not None:
            out["values"] = list(self.values)
        if self.samples is not None:
            out["samples"] = [sample.to_dict() for sample in self.samples]
        if self.value is not None:
            out["value"] = self.value
        out["name"] = self.name
        out["threshold"] = {"name": self.threshold.name, "value": self.threshold.value}
        return out
