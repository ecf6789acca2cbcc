"""Test helpers: record events from an emitter and wait for them without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class EventLog:
    """Records ``(name, args)`` of the named events of an emitter, in order."""

    def __init__(self, emitter: Any, *names: str) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in names:
            emitter.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.events.append((name, args))
            self._changed.set()

        return record

    def names(self) -> list[str]:
        """The event names seen so far, in order."""
        return [name for name, _ in self.events]

    def args(self, name: str) -> list[tuple[Any, ...]]:
        """The argument tuples of every ``name`` event."""
        return [args for n, args in self.events if n == name]

    def count(self, name: str) -> int:
        """How many ``name`` events were seen."""
        return self.names().count(name)

    async def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> tuple[Any, ...]:
        """Wait until ``name`` has been seen ``count`` times; returns the last one's args."""

        async def until() -> tuple[Any, ...]:
            while self.count(name) < count:
                self._changed.clear()
                await self._changed.wait()
            return self.args(name)[count - 1]

        return await asyncio.wait_for(until(), timeout)


async def eventually(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate()`` until it is true; fail the test after ``timeout`` seconds.

    The one poll-until helper of the tests: use it for state that no event announces
    (an :class:`EventLog` waits for events without polling).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(interval)
