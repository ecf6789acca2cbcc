"""Tests for softphone.signaling.backoff: the JS backoff formula and the §3.5 pair.

No timers: delays are computed with explicit ``u`` values or a scripted rng.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest

from softphone.signaling.backoff import (
    MAX_PREFERRED_DELAY_MS,
    MAX_PRIMARY_DELAY_MS,
    MAX_RETRY_AFTER_DELAY_MS,
    MAX_RETRY_AFTER_DURATION_MS,
    Backoff,
    ReconnectBackoffs,
    backoff_duration,
)

pytestmark = pytest.mark.pure


def scripted(values: Iterable[float]) -> Callable[[], float]:
    """An rng returning ``values`` in turn (cycled), recording nothing else."""
    it = itertools.cycle(list(values))
    return lambda: next(it)


def no_rng() -> float:
    """An rng that must not be called."""
    raise AssertionError("rng must not be used here")


def run_steps(backoff: Backoff, count: int) -> list[int]:
    """Arm and fire ``count`` steps in order, returning the armed delays."""
    delays = []
    for _ in range(count):
        delays.append(backoff.next_delay())
        backoff.fired()
    return delays


# --- the pure formula --------------------------------------------------------


def test_chk_245_default_doubling_from_100() -> None:
    assert [backoff_duration(n) for n in range(4)] == [100, 200, 400, 800]


def test_chk_245_backoff_class_default_sequence() -> None:
    assert run_steps(Backoff(rng=no_rng), 4) == [100, 200, 400, 800]


def test_max_caps_each_step() -> None:
    assert [backoff_duration(n, max_ms=400) for n in range(6)] == [100, 200, 400, 400, 400, 400]
    assert run_steps(Backoff(max_ms=5000, rng=no_rng), 9)[-3:] == [5000, 5000, 5000]


def test_factor_three() -> None:
    assert [backoff_duration(n, factor=3) for n in range(4)] == [100, 300, 900, 2700]


def test_jitter_even_branch_subtracts() -> None:
    # u=0.25: floor(2.5)=2 even; dev = floor(0.25*0.4*400) = 40 → 400-40.
    assert backoff_duration(2, jitter=0.4, u=0.25) == 360


def test_jitter_odd_branch_adds() -> None:
    # u=0.35: floor(3.5)=3 odd; 0.35*0.4*400 is 55.999… in IEEE doubles (JS
    # computes the same), so dev = 55 → 400+55.
    assert backoff_duration(2, jitter=0.4, u=0.35) == 455


def test_jitter_zero_u_is_exact() -> None:
    assert backoff_duration(3, jitter=0.4, u=0.0) == 800


def test_jitter_applies_before_the_cap() -> None:
    # odd draw pushes past max, the cap still wins.
    assert backoff_duration(3, max_ms=850, jitter=0.4, u=0.35) == 850


@pytest.mark.parametrize("jitter", [0.0, -0.5, 1.5, 2.0])
def test_jitter_outside_0_1_is_ignored(jitter: float) -> None:
    assert backoff_duration(2, jitter=jitter, u=0.35) == 400


def test_jitter_of_exactly_one_applies() -> None:
    # u=0.95: floor(9.5)=9 odd; dev = floor(0.95*1*100) = 95.
    assert backoff_duration(0, jitter=1.0, u=0.95) == 195


def test_result_is_truncated_to_int() -> None:
    assert backoff_duration(1, min_ms=100, factor=1.5) == 150
    assert backoff_duration(1, min_ms=101, factor=1.5) == 151  # 151.5 truncated
    assert isinstance(backoff_duration(1, min_ms=101, factor=1.5), int)


def test_chk_249_use_initial_value_returns_exactly_min_even_with_jitter() -> None:
    for u in (0.0, 0.35, 0.99):
        assert backoff_duration(0, min_ms=10_000, jitter=0.4, use_initial_value=True, u=u) == 10_000
    # without it, the same jitter moves the first delay
    assert (
        backoff_duration(0, min_ms=10_000, max_ms=750_000, jitter=0.4, u=0.35) == 11_399
    )  # dev = floor(1399.99…)


def test_chk_249_use_initial_value_only_affects_attempt_zero() -> None:
    assert backoff_duration(1, min_ms=10_000, max_ms=750_000, use_initial_value=True) == 20_000
    b = Backoff(min_ms=10_000, max_ms=750_000, use_initial_value=True, jitter=0.4, rng=no_rng)
    assert b.next_delay() == 10_000  # no rng draw on the initial step


def test_overflow_mirrors_js_float_semantics() -> None:
    # 100 * 2**1100 overflows to Infinity in JS; Python would raise.
    assert backoff_duration(1100, max_ms=20_000) == 20_000
    # odd draw: Inf + Inf → capped; even draw: Inf - Inf = NaN → NaN|0 = 0.
    assert backoff_duration(1100, max_ms=20_000, jitter=0.4, u=0.35) == 20_000
    assert backoff_duration(1100, max_ms=20_000, jitter=0.4, u=0.25) == 0


# --- the Backoff class ---------------------------------------------------------


def test_next_delay_does_not_increment() -> None:
    b = Backoff(rng=no_rng)
    assert b.attempts == 0
    assert b.next_delay() == 100
    assert b.next_delay() == 100
    assert b.attempts == 0


def test_fired_returns_the_attempt_that_fired() -> None:
    b = Backoff(rng=no_rng)
    assert [b.fired() for _ in range(3)] == [0, 1, 2]
    assert b.attempts == 3


def test_chk_247_rearm_inside_ready_reuses_same_attempt() -> None:
    """JS re-arms from the ``ready`` listener before ``n++``: 100,100,200,400,800."""
    b = Backoff(max_ms=5000, rng=no_rng)
    delays = [b.next_delay()]
    attempts = []
    for _ in range(4):
        # timer fired: the ready handler re-arms, then the counter moves on
        attempts.append(b.attempts)
        delays.append(b.next_delay())
        b.fired()
    attempts.append(b.fired())
    assert delays == [100, 100, 200, 400, 800]
    assert attempts == [0, 1, 2, 3, 4]


def test_chk_246_reset_restarts_the_doubling() -> None:
    b = Backoff(rng=no_rng)
    run_steps(b, 3)
    b.reset()
    assert b.attempts == 0
    b.reset()
    assert run_steps(b, 3) == [100, 200, 400]


def test_rng_drawn_once_per_jittered_step() -> None:
    draws: list[float] = []

    def rng() -> float:
        draws.append(0.25)
        return 0.25

    b = Backoff(jitter=0.4, rng=rng)
    assert run_steps(b, 3) == [90, 180, 360]
    assert len(draws) == 3


def test_falsy_options_fall_back_to_js_defaults() -> None:
    b = Backoff(min_ms=0, max_ms=0, factor=0, rng=no_rng)
    assert (b.min_ms, b.max_ms, b.factor) == (100, 10_000, 2)
    assert Backoff(jitter=3.0).jitter == 0.0


def test_chk_248_counts_within_windows() -> None:
    """The JS timing test, replayed on a virtual clock.

    The JS test re-arms from each ``ready`` (so the first delay repeats) and
    counts the ``ready`` events inside a window.
    """

    def readies_within(window_ms: int, rng: Callable[[], float] = no_rng, **options: float) -> int:
        b = Backoff(rng=rng, **options)  # type: ignore[arg-type]
        clock = b.next_delay()
        count = 0
        while clock <= window_ms:
            count += 1
            clock += b.next_delay()  # re-armed inside ready, before n++
            b.fired()
        return count

    assert readies_within(1550, max_ms=400) == 5
    assert readies_within(1550, rng=scripted([0.35]), max_ms=400, jitter=0.1) == 5
    assert readies_within(10_000, min_ms=600) == 5
    assert readies_within(10_000, factor=3) == 5
    assert readies_within(25_000, min_ms=200, max_ms=20_000) == 7
    assert readies_within(25_000, min_ms=200, max_ms=20_000, factor=3) == 6
    assert readies_within(80_000, min_ms=10_000, max_ms=750_000, use_initial_value=True) == 4


# --- the §3.5 reconnect pair ---------------------------------------------------


def test_preferred_without_retry_after_doubles_to_1000_cap() -> None:
    pair = ReconnectBackoffs(uri_count=1, has_preferred=True, rng=scripted([0.0]))
    assert run_steps(pair.preferred, 7) == [100, 200, 400, 800, 1000, 1000, 1000]
    assert pair.preferred.max_ms == MAX_PREFERRED_DELAY_MS
    assert pair.preferred.jitter == 0.4
    assert pair.preferred.factor == 2
    assert pair.preferred.use_initial_value is False
    assert pair.retry_after_ms is None


def test_preferred_total_is_max_call_signaling_timeout() -> None:
    pair = ReconnectBackoffs(uri_count=1, has_preferred=True, max_preferred_duration_ms=5)
    assert pair.preferred_total_ms == 5
    assert ReconnectBackoffs(uri_count=1).preferred_total_ms == 15_000


def test_primary_single_uri_starts_at_100() -> None:
    pair = ReconnectBackoffs(uri_count=1, rng=scripted([0.0]))
    assert pair.primary.min_ms == 100
    assert pair.primary.max_ms == MAX_PRIMARY_DELAY_MS
    delays = run_steps(pair.primary, 10)
    assert delays[:4] == [100, 200, 400, 800]
    assert delays[-2:] == [20_000, 20_000]


@pytest.mark.parametrize(
    ("u", "expected_min"),
    [(0.0, 1000), (0.5, 3000), (0.99999999, 5000), (0.25, 2000)],
)
def test_primary_several_uris_random_min_in_1000_5000(u: float, expected_min: int) -> None:
    pair = ReconnectBackoffs(uri_count=3, rng=scripted([u]))
    assert pair.primary.min_ms == expected_min


def test_primary_min_uses_one_draw_and_stays_in_range() -> None:
    for i in range(200):
        u = i / 200
        pair = ReconnectBackoffs(uri_count=3, rng=scripted([u]))
        assert 1000 <= pair.primary.min_ms <= 5000
        assert float(pair.primary.min_ms).is_integer()


def test_primary_several_uris_doubles_from_random_min() -> None:
    pair = ReconnectBackoffs(uri_count=2, rng=scripted([0.5, 0.0, 0.0, 0.0, 0.0]))
    assert pair.primary.min_ms == 3000
    assert run_steps(pair.primary, 4) == [3000, 6000, 12_000, 20_000]


def test_retry_after_with_preferred_uri() -> None:
    pair = ReconnectBackoffs(
        uri_count=1, retry_after_ms=30_000, has_preferred=True, rng=scripted([0.35])
    )
    assert pair.retry_after_ms == 30_000
    assert pair.preferred.min_ms == 30_000
    assert pair.preferred.use_initial_value is True
    assert pair.preferred.max_ms == MAX_RETRY_AFTER_DELAY_MS
    assert pair.preferred_total_ms == MAX_RETRY_AFTER_DURATION_MS
    # first step is exactly retryAfter despite jitter, then doubling (jittered) up to 60 s
    assert pair.preferred.next_delay() == 30_000
    pair.preferred.fired()
    assert pair.preferred.next_delay() == 60_000


def test_retry_after_ignored_without_preferred_uri() -> None:
    pair = ReconnectBackoffs(uri_count=1, retry_after_ms=30_000, has_preferred=False)
    assert pair.retry_after_ms is None
    assert pair.preferred.min_ms == 100
    assert pair.preferred.max_ms == MAX_PREFERRED_DELAY_MS
    assert pair.preferred.use_initial_value is False


def test_retry_after_zero_counts_as_none() -> None:
    pair = ReconnectBackoffs(
        uri_count=1, retry_after_ms=0, has_preferred=True, max_preferred_duration_ms=7
    )
    assert pair.retry_after_ms is None
    assert pair.preferred.min_ms == 100
    assert pair.preferred_total_ms == 7


def test_retry_after_does_not_touch_primary() -> None:
    pair = ReconnectBackoffs(uri_count=1, retry_after_ms=30_000, has_preferred=True)
    assert pair.primary.min_ms == 100
    assert pair.primary.max_ms == MAX_PRIMARY_DELAY_MS


def test_start_time_recorded_on_step_zero_only() -> None:
    pair = ReconnectBackoffs(uri_count=1, has_preferred=True, rng=scripted([0.0]))
    assert pair.preferred_start_ms is None
    assert pair.arm_preferred(1_000) == 100
    assert pair.preferred_start_ms == 1_000
    pair.preferred.fired()
    assert pair.arm_preferred(2_000) == 200
    assert pair.preferred_start_ms == 1_000
    assert pair.arm_primary(3_000) == 100
    assert pair.primary_start_ms == 3_000


def test_preferred_expired_is_strictly_greater() -> None:
    pair = ReconnectBackoffs(
        uri_count=1, has_preferred=True, max_preferred_duration_ms=1_000, rng=scripted([0.0])
    )
    assert pair.preferred_expired(10_000) is False  # nothing armed yet
    pair.arm_preferred(0)
    assert pair.preferred_expired(1_000) is False
    assert pair.preferred_expired(1_001) is True


def test_default_max_duration_zero_expires_at_first_ready() -> None:
    """§3.5: with maxCallSignalingTimeoutMs = 0 the first preferred ready falls back."""
    pair = ReconnectBackoffs(
        uri_count=2, has_preferred=True, max_preferred_duration_ms=0, rng=scripted([0.3])
    )
    delay = pair.arm_preferred(5_000)
    assert 60 <= delay <= 140
    assert pair.preferred_expired(5_000 + delay) is True


def test_retry_after_total_is_75_seconds() -> None:
    pair = ReconnectBackoffs(uri_count=1, retry_after_ms=10_000, has_preferred=True)
    pair.arm_preferred(0)
    assert pair.preferred_expired(75_000) is False
    assert pair.preferred_expired(75_001) is True


@pytest.mark.parametrize(
    ("uri_count", "cap", "expected_min", "expected_max"),
    [
        (2, 200, 200, 200),  # the 1-5 s random start is capped too
        (1, 5_000, 100, 5_000),
        (2, None, 3_000, MAX_PRIMARY_DELAY_MS),  # no cap: the JS 20 s
        (2, 0, 3_000, MAX_PRIMARY_DELAY_MS),  # 0 or less counts as none
    ],
)
def test_primary_max_ms_caps_the_primary_only(
    uri_count: int, cap: float | None, expected_min: float, expected_max: float
) -> None:
    """Our honoured ``backoffMaxMs`` (ignored by JS) bounds each primary delay."""
    pair = ReconnectBackoffs(
        uri_count=uri_count, has_preferred=True, primary_max_ms=cap, rng=scripted([0.5, 0.0])
    )
    assert (pair.primary.min_ms, pair.primary.max_ms) == (expected_min, expected_max)
    assert pair.preferred.max_ms == MAX_PREFERRED_DELAY_MS
    assert max(run_steps(pair.primary, 8)) <= expected_max
