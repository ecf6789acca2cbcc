"""The JS SDK's reconnect backoff, as pure code.

The Voice JS SDK (``lib/twilio/backoff.ts``) schedules every WebSocket
reconnect attempt with a small exponential backoff, and its WSTransport keeps
two of them: a *preferred* one (reconnect to the edge a live call is on) and a
*primary* one (walk the URI list). This module reproduces the delay formula
bit for bit and the two backoffs' parameters (transport-and-edges.md §3.4,
§3.5), but owns no timer: the asyncio transport asks for a delay, sleeps, and
reports the timer back with :meth:`Backoff.fired`. Time and randomness are
always passed in, so every sequence is reproducible in tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_JITTER",
    "MAX_PREFERRED_DELAY_MS",
    "MAX_PREFERRED_DURATION_MS",
    "MAX_PRIMARY_DELAY_MS",
    "MAX_RETRY_AFTER_DELAY_MS",
    "MAX_RETRY_AFTER_DURATION_MS",
    "Backoff",
    "ReconnectBackoffs",
    "backoff_duration",
]

BACKOFF_FACTOR = 2
"""Growth factor of both reconnect backoffs."""

BACKOFF_JITTER = 0.4
"""Jitter of both reconnect backoffs (a step deviates by up to 40 %)."""

MAX_PREFERRED_DELAY_MS = 1_000
"""Cap of one preferred-URI step (``MAX_PREFERRED_DELAY``)."""

MAX_PREFERRED_DURATION_MS = 15_000
"""The transport's own default total preferred time. The Device always
overrides it with ``maxCallSignalingTimeoutMs`` (default 0)."""

MAX_PRIMARY_DELAY_MS = 20_000
"""Cap of one primary step (``MAX_PRIMARY_DELAY``); the primary never gives up."""

MAX_RETRY_AFTER_DELAY_MS = 60_000
"""Cap of a preferred step while a server ``retryAfter`` is in force."""

MAX_RETRY_AFTER_DURATION_MS = 75_000
"""Total preferred-retry time while a server ``retryAfter`` is in force."""

_PRIMARY_RANDOM_MIN_LOW_MS = 1_000
_PRIMARY_RANDOM_MIN_HIGH_MS = 5_000
_SINGLE_URI_MIN_MS = 100


def _js_pow(base: float, exponent: int) -> float:
    """``Math.pow`` for a non-negative integer exponent: overflow gives ±Infinity.

    Python raises ``OverflowError`` where JavaScript quietly returns Infinity,
    and a backoff that never succeeds does reach that range (after ~1000
    attempts), so the JS result is reproduced instead of crashing.
    """
    try:
        return base**exponent
    except OverflowError:
        negative = base < 0 and exponent % 2 == 1
        return -math.inf if negative else math.inf


def _js_floor(value: float) -> float:
    """``Math.floor``: like :func:`math.floor` but passes NaN and ±Infinity through."""
    return float(math.floor(value)) if math.isfinite(value) else value


def _js_min(a: float, b: float) -> float:
    """``Math.min`` of two numbers: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b)


def _to_int32(value: float) -> int:
    """JavaScript's ``value | 0`` (ToInt32): truncate, wrap to 32 bits; NaN/±Inf → 0."""
    if not math.isfinite(value):
        return 0
    wrapped = math.trunc(value) % 2**32
    return wrapped - 2**32 if wrapped >= 2**31 else wrapped


def backoff_duration(
    attempt: int,
    *,
    min_ms: float = 100,
    max_ms: float = 10_000,
    factor: float = 2,
    jitter: float = 0.0,
    use_initial_value: bool = False,
    u: float = 0.0,
) -> int:
    """Return the delay in ms of backoff step ``attempt`` (0-based), exactly as JS computes it.

    1. ``use_initial_value`` and ``attempt == 0`` → ``min_ms`` as an int (no jitter, no cap).
    2. Otherwise ``d = min_ms * factor**attempt``; if ``0 < jitter <= 1`` (any
       other jitter counts as none), ``dev = floor(u * jitter * d)`` and ``d``
       becomes ``d - dev`` when ``floor(u * 10)`` is even, else ``d + dev``.
    3. ``min(d, max_ms)`` truncated to a 32-bit integer (JS ``| 0``).

    ``u`` is the one uniform draw in [0, 1) the JS code takes from
    ``Math.random()`` per step; it is ignored when jitter does not apply. The
    JS float quirks are kept on purpose, e.g. once ``factor**attempt``
    overflows, an even draw yields ``Infinity - Infinity`` → NaN → 0 ms.
    """
    if use_initial_value and attempt == 0:
        return _to_int32(min_ms)
    duration = float(min_ms) * _js_pow(float(factor), attempt)
    if 0 < jitter <= 1:
        deviation = _js_floor(u * jitter * duration)
        even = (math.floor(u * 10) & 1) == 0
        duration = duration - deviation if even else duration + deviation
    return _to_int32(_js_min(duration, float(max_ms)))


class Backoff:
    """One JS ``Backoff`` without its timer: a step counter plus the delay formula.

    The JS object emits ``backoff(n, d)`` when armed and ``ready(n, d)`` when
    its timer fires, and increments ``n`` only *after* ``ready``. The driver
    mirrors that with :meth:`next_delay` (arming: compute ``d`` for the current
    ``n``, which does not change it) and :meth:`fired` (the timer fired: ``n``
    moves on). Arming again before :meth:`fired` therefore reuses the same
    ``n``, exactly like re-arming synchronously from a JS ``ready`` listener.

    Falsy ``min_ms``, ``max_ms`` or ``factor`` fall back to the defaults, as the
    JS ``options.min || 100`` does.
    """

    def __init__(
        self,
        min_ms: float = 100,
        max_ms: float = 10_000,
        factor: float = 2,
        jitter: float = 0.0,
        use_initial_value: bool = False,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.min_ms: float = min_ms or 100
        self.max_ms: float = max_ms or 10_000
        self.factor: float = factor or 2
        self.jitter: float = jitter if 0 < jitter <= 1 else 0.0
        self.use_initial_value = use_initial_value
        self.attempts = 0
        self._rng = rng

    def next_delay(self) -> int:
        """Return the delay (ms) for arming the current step; ``attempts`` is unchanged.

        Draws one value from ``rng`` only when the JS code would call
        ``Math.random()`` (jitter in force and not the initial-value step).
        """
        initial = self.use_initial_value and self.attempts == 0
        u = self._rng() if self.jitter and not initial else 0.0
        return backoff_duration(
            self.attempts,
            min_ms=self.min_ms,
            max_ms=self.max_ms,
            factor=self.factor,
            jitter=self.jitter,
            use_initial_value=self.use_initial_value,
            u=u,
        )

    def fired(self) -> int:
        """Record that the armed step's timer fired; return that step's attempt number."""
        attempt = self.attempts
        self.attempts += 1
        return attempt

    def reset(self) -> None:
        """Restart the doubling from attempt 0 (the driver also cancels its timer)."""
        self.attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(min_ms={self.min_ms!r}, max_ms={self.max_ms!r}, factor={self.factor!r}, "
            f"jitter={self.jitter!r}, use_initial_value={self.use_initial_value!r}, "
            f"attempts={self.attempts})"
        )


class ReconnectBackoffs:
    """The transport's pair of backoffs (§3.5), built fresh whenever they are missing.

    The JS transport discards both backoffs when a socket opens (or closes
    after being open > 10 s) and builds new ones at the next close, so one
    instance covers one outage. Parameters:

    * ``preferred`` (used while a preferred URI is set): min 100 ms, cap
      1 000 ms, total ``max_preferred_duration_ms``. If a server ``retryAfter``
      is stored *and* a preferred URI is set at construction: min =
      ``retry_after_ms`` used as-is for the first step, cap 60 000 ms, total
      75 000 ms. A ``retry_after_ms`` of 0 counts as none (JS truthiness).
    * ``primary``: min = random integer in [1000, 5000] ms when there is more
      than one URI (spreads a reconnect storm across clients), else 100 ms;
      cap 20 000 ms, or ``primary_max_ms`` when that is a positive number (then
      the min is capped by it too); no total limit. ``primary_max_ms`` is the
      Device option ``backoffMaxMs``, which the JS SDK accepts and ignores and
      we honour, so an application can bound how long a dropped Device stays away.

    Both use factor 2 and jitter 0.4. The start-time bookkeeping mirrors the
    JS ``backoff`` listeners, which remember the time when step 0 is armed.
    """

    def __init__(
        self,
        *,
        uri_count: int,
        retry_after_ms: float | None = None,
        has_preferred: bool = False,
        max_preferred_duration_ms: float = MAX_PREFERRED_DURATION_MS,
        primary_max_ms: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.retry_after_ms: float | None = (
            retry_after_ms if has_preferred and retry_after_ms else None
        )
        if self.retry_after_ms:
            self.preferred = Backoff(
                min_ms=self.retry_after_ms,
                max_ms=MAX_RETRY_AFTER_DELAY_MS,
                factor=BACKOFF_FACTOR,
                jitter=BACKOFF_JITTER,
                use_initial_value=True,
                rng=rng,
            )
            self.preferred_total_ms: float = MAX_RETRY_AFTER_DURATION_MS
        else:
            self.preferred = Backoff(
                min_ms=_SINGLE_URI_MIN_MS,
                max_ms=MAX_PREFERRED_DELAY_MS,
                factor=BACKOFF_FACTOR,
                jitter=BACKOFF_JITTER,
                rng=rng,
            )
            self.preferred_total_ms = max_preferred_duration_ms
        primary_min: float
        if uri_count > 1:
            span = _PRIMARY_RANDOM_MIN_HIGH_MS - _PRIMARY_RANDOM_MIN_LOW_MS + 1
            primary_min = math.floor(rng() * span) + _PRIMARY_RANDOM_MIN_LOW_MS
        else:
            primary_min = _SINGLE_URI_MIN_MS
        primary_max: float = MAX_PRIMARY_DELAY_MS
        if primary_max_ms is not None and primary_max_ms > 0:
            primary_max = primary_max_ms
            primary_min = min(primary_min, primary_max_ms)
        self.primary = Backoff(
            min_ms=primary_min,
            max_ms=primary_max,
            factor=BACKOFF_FACTOR,
            jitter=BACKOFF_JITTER,
            rng=rng,
        )
        self.preferred_start_ms: float | None = None
        self.primary_start_ms: float | None = None

    def arm_preferred(self, now_ms: float) -> int:
        """Arm a preferred step: return its delay and remember ``now_ms`` if it is step 0."""
        if self.preferred.attempts == 0:
            self.preferred_start_ms = now_ms
        return self.preferred.next_delay()

    def arm_primary(self, now_ms: float) -> int:
        """Arm a primary step: return its delay and remember ``now_ms`` if it is step 0."""
        if self.primary.attempts == 0:
            self.primary_start_ms = now_ms
        return self.primary.next_delay()

    def preferred_expired(self, now_ms: float) -> bool:
        """Whether more than the preferred total has elapsed since preferred step 0.

        True means: drop the preferred URI and arm a primary step instead of
        reconnecting to the preferred URI. Strictly greater, as in JS, so with
        a total of 0 any later firing expires. False when no preferred step was
        armed yet (JS then attempts nothing at all; check
        ``preferred_start_ms is None`` to tell the cases apart).
        """
        if self.preferred_start_ms is None:
            return False
        return now_ms - self.preferred_start_ms > self.preferred_total_ms
