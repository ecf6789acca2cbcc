"""Mean opinion score from rtt, jitter and loss: the JS SDK's ``Mos.calculate``.

A simplified ITU-T G.107 E-model, kept operation for operation as the JS SDK
computes it so a call's ``sample.mos`` matches a browser's for the same inputs.
"""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["R0", "calculate_mos"]

R0 = 94.768
"""``r0``: the R-factor of a perfect connection before delay and loss impairments."""

_MIN_R_WITHIN_LOSS_LIMIT = 6.52
"""Floor of the R-factor while the loss is within ``R / 2.5`` (keeps MOS at about 1.0)."""


def _is_non_negative_number(value: object) -> TypeGuard[float]:
    """JS ``isNonNegativeNumber``: a real number (not a bool), finite, not NaN and >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


def calculate_mos(
    rtt: float | None, jitter: float | None, fraction_lost: float | None
) -> float | None:
    """MOS (1.0 to about 4.43) for ``rtt`` ms, ``jitter`` ms and ``fraction_lost`` percent.

    ``fraction_lost`` is the interval's loss in percent (0 to 100), as in the
    sample's ``packets_lost_fraction``. Returns None unless all three inputs are
    finite, non-negative numbers (JS returns ``null``): a first sample, which has
    no interval loss yet, or a missing rtt therefore has no MOS.
    """
    if not (
        _is_non_negative_number(rtt)
        and _is_non_negative_number(jitter)
        and _is_non_negative_number(fraction_lost)
    ):
        return None

    effective_latency = rtt + (jitter * 2) + 10

    if effective_latency < 160:
        r_factor = R0 - (effective_latency / 40)
    elif effective_latency < 1000:
        r_factor = R0 - ((effective_latency - 120) / 10)
    else:
        r_factor = 0.0

    if fraction_lost <= (r_factor / 2.5):
        r_factor = max(r_factor - fraction_lost * 2.5, _MIN_R_WITHIN_LOSS_LIMIT)
    else:
        r_factor = 0.0

    return float(
        1 + (0.035 * r_factor) + (0.000007 * r_factor) * (r_factor - 60) * (100 - r_factor)
    )
