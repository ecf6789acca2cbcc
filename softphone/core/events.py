"""A Node.js-style EventEmitter, so JS SDK code ports line by line.

``Device``, ``Call``, ``AudioHelper`` and ``PreflightTest`` all inherit it. Listeners
run synchronously in registration order (as in Node); a listener that is a
coroutine function is scheduled as a task on the running loop, and its exceptions
are logged. An ``error`` event with no listener is logged at ERROR level instead of
raising as Node does, because it is usually emitted from inside network callbacks
where raising would only kill the callback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

Listener = Callable[..., Any]

log = logging.getLogger("softphone.events")


class _Once:
    """Wrapper marking a listener that removes itself after its first call."""

    __slots__ = ("fired", "listener")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.fired = False


class EventEmitter:
    """Node's EventEmitter API in snake_case (``on``, ``once``, ``off``, ``emit`` …)."""

    default_max_listeners = 10
    """Listeners per event before a leak warning is logged (Node's default)."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener | _Once]] = {}
        self._max_listeners: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- registration ------------------------------------------------------------------
    def on(self, event: str, listener: Listener | None = None) -> Any:
        """Add ``listener`` for ``event``; usable as ``@emitter.on("event")`` decorator."""
        if listener is None:

            def decorator(fn: Listener) -> Listener:
                self._add(event, fn, prepend=False)
                return fn

            return decorator
        self._add(event, listener, prepend=False)
        return self

    add_listener = on

    def once(self, event: str, listener: Listener | None = None) -> Any:
        """Add a listener that is removed after it has run once."""
        if listener is None:

            def decorator(fn: Listener) -> Listener:
                self._add(event, _Once(fn), prepend=False)
                return fn

            return decorator
        self._add(event, _Once(listener), prepend=False)
        return self

    def prepend_listener(self, event: str, listener: Listener) -> EventEmitter:
        """Add ``listener`` before every existing listener of ``event``."""
        self._add(event, listener, prepend=True)
        return self

    def prepend_once_listener(self, event: str, listener: Listener) -> EventEmitter:
        """Like :meth:`prepend_listener`, removed after one call."""
        self._add(event, _Once(listener), prepend=True)
        return self

    def off(self, event: str, listener: Listener) -> EventEmitter:
        """Remove the most recently added instance of ``listener`` for ``event``."""
        entries = self._listeners.get(event, [])
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            if entry is listener or (isinstance(entry, _Once) and entry.listener is listener):
                del entries[index]
                break
        if not entries:
            self._listeners.pop(event, None)
        return self

    remove_listener = off

    def remove_all_listeners(self, event: str | None = None) -> EventEmitter:
        """Remove every listener of ``event``, or of all events when ``event`` is None."""
        if event is None:
            self._listeners.clear()
        else:
            self._listeners.pop(event, None)
        return self

    # -- inspection --------------------------------------------------------------------
    def listeners(self, event: str) -> list[Listener]:
        """A copy of the listeners of ``event`` (once-wrappers unwrapped)."""
        return [e.listener if isinstance(e, _Once) else e for e in self._listeners.get(event, [])]

    raw_listeners = listeners

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has."""
        return len(self._listeners.get(event, []))

    def event_names(self) -> list[str]:
        """Events that currently have listeners."""
        return list(self._listeners)

    def set_max_listeners(self, n: int) -> EventEmitter:
        """Change the leak-warning threshold for this emitter (0 = unlimited)."""
        if n < 0:
            raise ValueError("max listeners must be a non-negative number")
        self._max_listeners = n
        return self

    def get_max_listeners(self) -> int:
        """The leak-warning threshold in force for this emitter."""
        return self.default_max_listeners if self._max_listeners is None else self._max_listeners

    # -- emission ----------------------------------------------------------------------
    def emit(self, event: str, *args: Any) -> bool:
        """Call every listener of ``event`` with ``args``; True if there was one."""
        entries = list(self._listeners.get(event, []))
        if not entries:
            if event == "error":
                log.error("unhandled 'error' event on %s: %s", type(self).__name__, args[:1])
            return False
        for entry in entries:
            if isinstance(entry, _Once):
                if entry.fired:
                    continue
                entry.fired = True
                self._drop(event, entry)
                self._call(entry.listener, args)
            else:
                self._call(entry, args)
        return True

    def _call(self, listener: Listener, args: tuple[Any, ...]) -> None:
        try:
            result = listener(*args)
        except Exception:
            log.exception("listener %r raised", listener)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async listener raised", exc_info=task.exception())

    def _add(self, event: str, entry: Listener | _Once, *, prepend: bool) -> None:
        entries = self._listeners.setdefault(event, [])
        if prepend:
            entries.insert(0, entry)
        else:
            entries.append(entry)
        limit = self.get_max_listeners()
        if limit and len(entries) == limit + 1:
            log.warning(
                "possible EventEmitter leak: %d '%s' listeners on %s (set_max_listeners)",
                len(entries),
                event,
                type(self).__name__,
            )

    def _drop(self, event: str, entry: _Once) -> None:
        entries = self._listeners.get(event, [])
        if entry in entries:
            entries.remove(entry)
        if not entries:
            self._listeners.pop(event, None)

    async def wait_for(self, event: str, timeout: float | None = None) -> tuple[Any, ...]:
        """Await the next ``event`` and return its arguments (a Python convenience)."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def resolve(*args: Any) -> None:
            if not future.done():
                future.set_result(args)

        self.once(event, resolve)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.off(event, resolve)
