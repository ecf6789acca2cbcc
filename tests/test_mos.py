"""MOS: the JS SDK's ``Mos.calculate`` (E-model R-factor to MOS) and its guards."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softphone.core.mos import calculate_mos

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("rtt", "jitter", "loss", "expected"),
    [
        (0, 0, 0, 4.433328),
        (20, 5, 0, 4.420009),
        (100, 10, 1, 4.314205),
        (200, 30, 3, 3.701487),
        (400, 30, 3, 2.694348),
        (1000, 0, 0, 1.000031),  # R is floored at 6.52
        (1000, 0, 1, 1.0),  # loss above R / 2.5: R = 0
    ],
)
def test_reference_values(rtt: float, jitter: float, loss: float, expected: float) -> None:
    mos = calculate_mos(rtt, jitter, loss)
    assert mos is not None
    assert mos == pytest.approx(expected, abs=5e-7)


def test_latency_band_edges_at_160_and_1000_ms() -> None:
    """Effective latency L = rtt + 2*jitter + 10: below 160 ms R loses L/40, then
    (L-120)/10 (both 4 at 160, so the bands meet), and from 1000 ms R is 0."""
    r_below = 94.768 - 159.5 / 40  # rtt 149.5: L = 159.5
    mos_below = 1 + 0.035 * r_below + 0.000007 * r_below * (r_below - 60) * (100 - r_below)
    assert calculate_mos(149.5, 0, 0) == pytest.approx(mos_below, rel=1e-12)
    r_at = 94.768 - (160 - 120) / 10  # L = 160 uses the second band
    mos_at = 1 + 0.035 * r_at + 0.000007 * r_at * (r_at - 60) * (100 - r_at)
    assert calculate_mos(150, 0, 0) == pytest.approx(mos_at, rel=1e-12)
    # L = 1000: R = 0 before loss, and 0 loss keeps R at max(0, 6.52) = 6.52.
    r_floor = 6.52
    mos_floor = 1 + 0.035 * r_floor + 0.000007 * r_floor * (r_floor - 60) * (100 - r_floor)
    assert calculate_mos(990, 0, 0) == pytest.approx(mos_floor, rel=1e-12)
    r_last = 94.768 - (999 - 120) / 10  # L = 999: still the second band (6.868 > 6.52)
    mos_last = 1 + 0.035 * r_last + 0.000007 * r_last * (r_last - 60) * (100 - r_last)
    assert calculate_mos(989, 0, 0) == pytest.approx(mos_last, rel=1e-12)


def test_loss_within_r_over_2_5_is_floored_and_beyond_it_is_zero() -> None:
    # rtt 0, jitter 0: R = 94.768 - 10/40 = 94.518; R / 2.5 = 37.8072.
    r = 94.518
    at_limit = calculate_mos(0, 0, 37.8)  # within: max(R - 94.5, 6.52) = 6.52
    r_floor = 6.52
    assert at_limit == pytest.approx(
        1 + 0.035 * r_floor + 0.000007 * r_floor * (r_floor - 60) * (100 - r_floor)
    )
    assert calculate_mos(0, 0, r / 2.5 + 0.001) == 1.0


@pytest.mark.parametrize(
    ("rtt", "jitter", "loss"),
    [
        (None, 1, 1),
        (1, None, 1),
        (1, 1, None),
        (None, None, None),
        (-1, 1, 1),
        (1, -1, 1),
        (1, 1, -0.5),
        (math.nan, 1, 1),
        (1, math.nan, 1),
        (1, 1, math.nan),
        (math.inf, 1, 1),
        (1, math.inf, 1),
        (1, 1, math.inf),
        (True, 1, 1),  # JS typeof true is "boolean", not "number"
    ],
)
def test_missing_negative_nan_or_infinite_inputs_give_none(
    rtt: float | None, jitter: float | None, loss: float | None
) -> None:
    assert calculate_mos(rtt, jitter, loss) is None


def test_good_values_give_a_number() -> None:
    assert calculate_mos(5, 0, 0) is not None
    assert calculate_mos(0, 0, 0) is not None


def _mos(rtt: float, jitter: float, loss: float) -> float:
    mos = calculate_mos(rtt, jitter, loss)
    assert mos is not None
    return mos


_rtt = st.floats(min_value=0, max_value=3000, allow_nan=False)
_jitter = st.floats(min_value=0, max_value=1500, allow_nan=False)
_loss = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(_rtt, _jitter, _loss)
def test_range_is_1_to_about_4_43(rtt: float, jitter: float, loss: float) -> None:
    assert 1.0 <= _mos(rtt, jitter, loss) <= 4.4334


@given(_rtt, _rtt, _jitter, _loss)
def test_non_increasing_in_rtt(a: float, b: float, jitter: float, loss: float) -> None:
    low, high = sorted((a, b))
    assert _mos(low, jitter, loss) >= _mos(high, jitter, loss)


@given(_rtt, _jitter, _jitter, _loss)
def test_non_increasing_in_jitter(rtt: float, a: float, b: float, loss: float) -> None:
    low, high = sorted((a, b))
    assert _mos(rtt, low, loss) >= _mos(rtt, high, loss)


@given(_rtt, _jitter, _loss, _loss)
def test_non_increasing_in_loss(rtt: float, jitter: float, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert _mos(rtt, jitter, low) >= _mos(rtt, jitter, high)


@pytest.mark.parametrize("axis", ["rtt", "jitter", "loss"])
def test_js_integer_sweeps_are_non_increasing(axis: str) -> None:
    """The JS test's sweeps: rtt 0..2999, jitter 0..1499, loss 0..99 with the others at 0."""
    limit = {"rtt": 3000, "jitter": 1500, "loss": 100}[axis]
    previous = math.inf
    for step in range(limit):
        args = {"rtt": 0, "jitter": 0, "loss": 0, axis: step}
        mos = _mos(args["rtt"], args["jitter"], args["loss"])
        assert 1.0 <= mos <= 4.5
        assert mos <= previous
        previous = mos
