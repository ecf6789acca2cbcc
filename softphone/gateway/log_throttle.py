"""Repeated log lines are throttled: a flooding client must not fill the disk.

A client sending tens of thousands of bad frames per second would otherwise make
the gateway write a log line for each. :class:`ThrottleFilter` lets each message
template (per logger) through at a bounded rate and, when it lets one through
again, says how many like it were dropped meanwhile. It keys on the unformatted
template, so "conn 7 sent a malformed frame" and "conn 8 sent a malformed frame"
share one budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

GATEWAY_LOGGERS = (
    "softphone.gateway",
    "softphone.gateway.calls",
    "softphone.gateway.connection",
    "websockets.server",
)
"""The loggers a client can make talk: the gateway's own and the WebSocket server's."""

BURST = 100
"""Lines of one template let through at once."""
PER_SECOND = 5.0
"""Lines of one template let through per second after the burst."""
MAX_TEMPLATES = 1024
"""Budgets kept at most (a safety net: templates are constants in the code)."""


class _Budget:
    __slots__ = ("last", "suppressed", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.suppressed = 0


class ThrottleFilter(logging.Filter):
    """At most ``burst`` records of one template at once, then ``per_second``."""

    def __init__(
        self,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = float(burst)
        self.per_second = per_second
        self.clock = clock
        self._budgets: dict[tuple[str, str], _Budget] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Let ``record`` through if its template has budget left; count it otherwise."""
        now = self.clock()
        key = (record.name, str(record.msg))
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) >= MAX_TEMPLATES:
                self._budgets.clear()
            budget = self._budgets[key] = _Budget(self.burst, now)
        budget.tokens = min(self.burst, budget.tokens + (now - budget.last) * self.per_second)
        budget.last = now
        if budget.tokens < 1:
            budget.suppressed += 1
            return False
        budget.tokens -= 1
        if budget.suppressed:
            record.msg = f"{record.getMessage()} ({budget.suppressed} similar suppressed)"
            record.args = ()
            budget.suppressed = 0
        return True


def install(names: Iterable[str] = GATEWAY_LOGGERS) -> None:
    """Put one :class:`ThrottleFilter` on each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ThrottleFilter) for f in logger.filters):
            logger.addFilter(ThrottleFilter())
