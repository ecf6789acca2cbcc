"""The signaling WebSocket: connect, heartbeat, reconnect with backoff, walk the edges.

A port of the JS SDK's WSTransport onto asyncio and ``websockets``. Decisions about
*which* URL to dial live in the pure :class:`~softphone.signaling.edge_walk.EdgeWalk`;
the reconnect delays, their parameters and the preferred-edge window come from the pure
:class:`~softphone.signaling.backoff.ReconnectBackoffs`. This module only does the I/O
and the timers. Time is read from an injectable ``clock`` (monotonic seconds), so the
rules that compare times (a socket open > 10 s resets the backoffs; the preferred edge
is given up after its window) can be driven by a test clock.

Events (pyee): ``open``; ``message(message)`` with each inbound frame decoded once, by
the codec (:func:`~softphone.signaling.messages.decode`), into its typed message;
``malformed(exc)`` with the :class:`~softphone.signaling.messages.MalformedMessage` of a
frame that could not be decoded; ``close``; ``error(info)`` where ``info`` is
``{"code": 31000|31005, "message": str}`` and ``message`` says in plain words what
failed (:mod:`softphone.signaling.failures`).

``wss://`` URLs are verified: with the ``ssl_context`` given, else with
``ssl.create_default_context()`` (the system trust store, or the file named by
``SSL_CERT_FILE``), made on the first ``wss`` dial rather than at import so the
environment in force when connecting is the one that counts.

Every socket that fails to open or closes is also counted in :attr:`WSTransport.failures`
with its cause in :attr:`WSTransport.last_failure`; the Device uses both to give up
establishing signaling instead of waiting forever. No task of this module ends with an
exception nobody retrieves: the socket task's unexpected failures are logged with code
31000 and reported as an ``error`` event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from softphone.signaling import failures
from softphone.signaling.backoff import (
    MAX_PREFERRED_DURATION_MS,
    MAX_RETRY_AFTER_DELAY_MS,
    ReconnectBackoffs,
)
from softphone.signaling.codes import CONNECTION_ERROR, UNKNOWN_ERROR
from softphone.signaling.edge_walk import EdgeWalk, SocketState
from softphone.signaling.messages import (
    HEARTBEAT,
    S2C,
    Error,
    MalformedMessage,
    Message,
    decode,
)

log = logging.getLogger("softphone.signaling.transport")

__all__ = [
    "ABNORMAL_CLOSE_TEXT",
    "CONNECT_SUCCESS_TIMEOUT_MS",
    "CONNECT_TIMEOUT_MS",
    "HEARTBEAT_TIMEOUT_MS",
    "MAX_RETRY_AFTER_DELAY_MS",
    "WSTransport",
    "default_client_context",
    "retry_after_ms",
]

CONNECT_TIMEOUT_MS = 5_000
"""A socket that has not opened by then is abandoned and the next URL is chosen."""
HEARTBEAT_TIMEOUT_MS = 15_000
"""No inbound frame for this long → reconnect."""
CONNECT_SUCCESS_TIMEOUT_MS = 10_000
"""A socket open longer than this resets the reconnect backoffs when it closes."""

ABNORMAL_CLOSE_TEXT = (
    "Websocket connection to the signaling server was unexpectedly ended. "
    "If this is happening consistently, there may be an issue resolving the hostname "
    "provided. If a region or an edge is being specified in Device setup, ensure it is valid."
)

_default_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


async def default_client_context() -> ssl.SSLContext:
    """``ssl.create_default_context()`` for the current ``SSL_CERT_FILE``/``SSL_CERT_DIR``.

    Made once per value of those variables (loading the system store takes tens of ms,
    so it runs in a worker thread, not on the event loop) and shared by every transport.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _default_contexts.get(key)
    if context is None:
        context = await asyncio.to_thread(ssl.create_default_context)
        _default_contexts[key] = context
    return context


def retry_after_ms(message: Message) -> float | None:
    """A server ``error`` message's ``retryAfter`` (:attr:`Error.retry_after`) in ms, or None.

    Only numbers count (a bool, a string, NaN do not); the value is clamped to
    [0, :data:`MAX_RETRY_AFTER_DELAY_MS`], so a hostile ``Infinity``, ``1e308`` or
    negative value can neither stall the reconnect nor overflow the backoff. Any other
    message gives None; nothing here raises. A result of 0 (``retryAfter: 0`` or a
    negative one) is not remembered by the transport: the JS SDK only stores a truthy
    ``retryAfter``.
    """
    if not isinstance(message, Error):
        return None
    seconds = message.retry_after
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds * 1000, 0.0), float(MAX_RETRY_AFTER_DELAY_MS))


class WSTransport(AsyncIOEventEmitter):
    """One logical signaling connection that survives socket failures.

    ``clock`` returns monotonic seconds (default :func:`time.monotonic`); it is read
    for every time comparison, while the timers themselves run on the event loop.
    ``rng`` is the one source of randomness (backoff jitter, the primary start delay).
    """

    def __init__(
        self,
        uris: list[str],
        *,
        max_preferred_duration_ms: float = MAX_PREFERRED_DURATION_MS,
        connect_timeout_ms: float = CONNECT_TIMEOUT_MS,
        heartbeat_timeout_ms: float = HEARTBEAT_TIMEOUT_MS,
        ssl_context: ssl.SSLContext | None = None,
        backoff_max_ms: float | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.backoff_max_ms = backoff_max_ms
        """Cap of one primary reconnect delay. The JS SDK accepts this option and ignores
        it; we honour it, so an app can bound how long a dropped Device stays away."""
        self.walk = EdgeWalk(list(uris))
        self.max_preferred_duration_ms = max_preferred_duration_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.ssl_context = ssl_context
        """TLS settings for ``wss://``; None verifies against the default trust store."""
        self._rng = rng
        self._clock = clock
        self.uri: str | None = None
        self.retry_after_ms: float | None = None
        """The last server ``retryAfter`` in ms (cleared when the backoffs are discarded)."""
        self._socket: ClientConnection | None = None
        self._socket_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._opened_at: float | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._backoff_timer: asyncio.TimerHandle | None = None
        self._backoffs: ReconnectBackoffs | None = None
        self.connect_attempts = 0
        """How many sockets were dialled (for tests and diagnostics)."""
        self.failures = 0
        """How many sockets failed to open or closed, in total."""
        self.last_failure: str | None = None
        """Why the most recent socket failed or closed, in plain words."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconnect_delays_ms: list[int] = []
        """Every reconnect delay scheduled so far, in order (diagnostics)."""

    # -- public API --------------------------------------------------------------------
    @property
    def state(self) -> SocketState:
        """``closed``, ``connecting`` or ``open``."""
        return self.walk.state

    @property
    def uris(self) -> list[str]:
        """The signaling URL list (round-robin fallback order)."""
        return self.walk.uris

    @property
    def preferred_uri(self) -> str | None:
        """The URL that wins while set (the edge of a live call)."""
        return self.walk.preferred

    def open(self) -> None:
        """Start connecting (no-op while a socket is connecting or open)."""
        if self._socket_task is not None and not self._socket_task.done():
            return
        self._connect(self.walk.target())

    def close(self) -> None:
        """Close for good: nothing reconnects until :meth:`open` is called again."""
        had_socket = self._socket is not None or (
            self._socket_task is not None and not self._socket_task.done()
        )
        self.walk.set_state(SocketState.CLOSED)
        self._cancel_timers()
        self._stop_socket()
        if had_socket:
            self.emit("close")

    def send(self, text: str) -> bool:
        """Queue ``text`` on the open socket; False if there is none (caller may retry)."""
        if self.walk.state is not SocketState.OPEN or self._socket is None:
            return False
        self._outbox.put_nowait(text)
        return True

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (at most ``timeout`` s) until the frames already queued have been written.

        Returns early when the socket goes away: its unsent frames are dropped then
        (see :meth:`_drop_outbox`), which also ends the wait.
        """
        if self._socket is None:
            return
        try:
            await asyncio.wait_for(self._outbox.join(), timeout)
        except TimeoutError:
            log.info("signaling flush gave up after %.1f s", timeout)

    def update_preferred_uri(self, uri: str | None) -> None:
        """Pin (or unpin with None) the URL to reconnect to first."""
        self.walk.preferred = uri

    def update_uris(self, uris: list[str]) -> None:
        """Replace the URL list and restart from its first entry."""
        self.walk.update_uris(uris)

    # -- socket lifecycle --------------------------------------------------------------
    def _connect(self, uri: str) -> None:
        self._stop_socket()
        self.walk.set_state(SocketState.CONNECTING)
        self.uri = uri
        self.connect_attempts += 1
        self._socket_task = self._spawn(self._run_socket(uri), "signaling socket")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task whose unexpected exception is logged with a code and reported, not lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, what))
        return task

    def _task_done(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("%s task failed (%d UnknownError): %r", what, UNKNOWN_ERROR, exc, exc_info=exc)
        self._emit_error(UNKNOWN_ERROR, f"internal error in the {what}: {exc!r}")
        if task is self._socket_task and self.walk.state is not SocketState.CLOSED:
            self._socket_task = None
            self._record_failure(f"internal error in the {what}: {exc!r}")
            self._stop_socket()
            self._after_socket_closed()

    async def _client_ssl(self, uri: str) -> ssl.SSLContext | None:
        """The TLS context for dialling ``uri``: None for ``ws://``, verified for ``wss://``."""
        if not uri.lower().startswith("wss:"):
            return None
        return self.ssl_context or await default_client_context()

    def _record_failure(self, cause: str) -> None:
        self.failures += 1
        self.last_failure = cause

    async def _run_socket(self, uri: str) -> None:
        log.debug("connecting to %s", uri)
        try:
            websocket = await asyncio.wait_for(self._dial(uri), self.connect_timeout_ms / 1000)
        except TimeoutError:
            cause = failures.connect_timeout(uri, self.connect_timeout_ms)
            log.info("signaling connect failed: %s", cause)
            self._record_failure(cause)
            self.walk.on_connect_timeout()
            self._after_socket_closed()
            return
        except (OSError, InvalidHandshake, InvalidURI, ssl.SSLError, ValueError) as exc:
            cause = failures.connect_failure(uri, exc)
            log.info("signaling connect failed: %s", cause)
            self._record_failure(cause)
            self._emit_error(UNKNOWN_ERROR, cause)
            self._on_socket_close(1006, "", recorded=True)
            return
        self._socket = websocket
        self._opened_at = self._clock()
        self.walk.on_open()
        self._discard_backoffs()
        self._arm_heartbeat()
        writer = self._spawn(self._write_loop(websocket, self._outbox), "signaling writer")
        self.emit("open")
        try:
            async for frame in websocket:
                self._arm_heartbeat()
                if not isinstance(frame, str):
                    continue
                if frame == HEARTBEAT:
                    self._outbox.put_nowait(HEARTBEAT)
                    continue
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
        code = websocket.close_code if websocket.close_code is not None else 1006
        reason = websocket.close_reason or ""
        if self._socket is websocket:
            self._on_socket_close(code, reason)

    async def _dial(self, uri: str) -> ClientConnection:
        return await connect(
            uri,
            ssl=await self._client_ssl(uri),
            open_timeout=None,
            ping_interval=None,
            max_size=2**22,
            compression=None,
        )

    @staticmethod
    async def _write_loop(websocket: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        """Write this socket's queued frames in order; each one is marked done once
        written (or abandoned), which is what :meth:`flush` waits for."""
        while True:
            text = await outbox.get()
            try:
                await websocket.send(text)
            except ConnectionClosed:
                return
            finally:
                outbox.task_done()

    def _drop_outbox(self) -> None:
        """The socket is gone: drop its unsent frames (a waiting :meth:`flush` returns)
        and give the next socket an empty queue."""
        outbox, self._outbox = self._outbox, asyncio.Queue()
        while not outbox.empty():
            outbox.get_nowait()
            outbox.task_done()

    def _on_socket_close(self, code: int, reason: str, *, recorded: bool = False) -> None:
        """What the JS ``_onSocketClose`` does: report, pick the next URL, back off."""
        if not recorded:
            self._record_failure(failures.socket_closed(self.uri or "", code, reason))
        if self.walk.on_close(code):
            self._emit_error(CONNECTION_ERROR, reason or self.last_failure or ABNORMAL_CLOSE_TEXT)
        self._after_socket_closed()

    def _emit_error(self, code: int, message: str) -> None:
        """Report a socket failure; logged instead when nobody listens (pyee would raise)."""
        if self.listeners("error"):
            self.emit("error", {"code": code, "message": message})
        else:
            log.info("signaling socket error %d: %s", code, message)

    def _after_socket_closed(self) -> None:
        self._cancel_heartbeat()
        self._socket = None
        self._drop_outbox()
        if (
            self._opened_at is not None
            and self._clock() - self._opened_at > CONNECT_SUCCESS_TIMEOUT_MS / 1000
        ):
            self._discard_backoffs()
        self._opened_at = None
        if self.walk.state is not SocketState.CLOSED:
            self.walk.set_state(SocketState.CONNECTING)
            self._backoff_step()
        self.emit("close")

    def _stop_socket(self) -> None:
        self._cancel_heartbeat()
        socket, task = self._socket, self._socket_task
        self._socket = None
        self._socket_task = None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if socket is not None:
            self._drop_outbox()
            self._spawn(socket.close(), "signaling socket close")

    # -- heartbeat ---------------------------------------------------------------------
    def _arm_heartbeat(self) -> None:
        self._cancel_heartbeat()
        self._heartbeat_timer = asyncio.get_running_loop().call_later(
            self.heartbeat_timeout_ms / 1000, self._on_heartbeat_timeout
        )

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None

    def _on_heartbeat_timeout(self) -> None:
        log.info("no signaling traffic for %.0f ms: reconnecting", self.heartbeat_timeout_ms)
        self.walk.on_heartbeat_timeout()
        socket = self._socket
        self._stop_socket()
        if socket is not None:
            self._record_failure(failures.silent_server(self.uri or "", self.heartbeat_timeout_ms))
            self._after_socket_closed()

    def _on_frame(self, frame: str) -> None:
        """Decode one text frame (the only decode it gets) and pass the message on.

        A server ``error`` with ``retryAfter`` is remembered for the preferred-edge
        backoff before listeners see it, as the JS transport does.
        """
        try:
            message = decode(frame, S2C)
        except MalformedMessage as exc:
            self.emit("malformed", exc)
            return
        assert isinstance(message, Message)  # heartbeats were answered before decoding
        value = retry_after_ms(message)
        if value:  # as in JS: a retryAfter of 0 (or a clamped negative one) is not stored
            self.retry_after_ms = value
        self.emit("message", message)

    # -- backoff -----------------------------------------------------------------------
    def _now_ms(self) -> float:
        return self._clock() * 1000

    def _discard_backoffs(self) -> None:
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
            self._backoff_timer = None
        self._backoffs = None
        self.retry_after_ms = None

    def _ensure_backoffs(self) -> ReconnectBackoffs:
        """The pair for this outage, built at its first close (JS ``_setupBackoffs``)."""
        if self._backoffs is None:
            self._backoffs = ReconnectBackoffs(
                uri_count=len(self.walk.uris),
                retry_after_ms=self.retry_after_ms,
                has_preferred=bool(self.walk.preferred),
                max_preferred_duration_ms=self.max_preferred_duration_ms,
                primary_max_ms=self.backoff_max_ms,
                rng=self._rng,
            )
        return self._backoffs

    def _backoff_step(self) -> None:
        self._schedule(preferred=bool(self.walk.preferred))

    def _schedule(self, *, preferred: bool) -> None:
        backoffs = self._ensure_backoffs()
        if preferred:
            delay_ms = backoffs.arm_preferred(self._now_ms())
            attempt = backoffs.preferred.attempts
        else:
            delay_ms = backoffs.arm_primary(self._now_ms())
            attempt = backoffs.primary.attempts
        self.reconnect_delays_ms.append(delay_ms)
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
        log.debug(
            "reconnect %s attempt %d in %d ms",
            "preferred" if preferred else "primary",
            attempt,
            delay_ms,
        )
        self._backoff_timer = asyncio.get_running_loop().call_later(
            delay_ms / 1000, self._on_backoff_ready, preferred
        )

    def _on_backoff_ready(self, preferred: bool) -> None:
        self._backoff_timer = None
        backoffs = self._backoffs
        assert backoffs is not None  # discarding the backoffs cancels their timer
        (backoffs.preferred if preferred else backoffs.primary).fired()
        if self.walk.state is SocketState.CLOSED:
            return
        if preferred:
            if backoffs.preferred_expired(self._now_ms()) or not self.walk.preferred:
                self.walk.preferred = None
                self._schedule(preferred=False)
                return
            self._connect(self.walk.preferred)
        else:
            self._connect(self.walk.primary_target())

    def _cancel_timers(self) -> None:
        self._cancel_heartbeat()
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
            self._backoff_timer = None
