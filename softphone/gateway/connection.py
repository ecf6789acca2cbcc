"""One signaling WebSocket as the gateway sees it: identity, token, liveness, outbound queue.

Sending never waits on the client. :meth:`ClientConnection.send` puts the frame in
this connection's own bounded queue and returns; the connection's writer task
hands frames to the socket in order. A client that does not read (or reads too
slowly) only ever blocks its own writer; once its queue holds more than
``send_queue_bytes`` it is dropped on the spot. Closing is queued behind the
frames already sent (so an ``error`` reaches the client before the close) and
bounded by ``close_timeout_s``, after which the socket is aborted.

What to do with inbound messages is the :class:`~softphone.gateway.server.Gateway`'s
business.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from typing import Any

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from softphone.gateway.limits import FrameBucket, Limits
from softphone.gateway.presence import Address
from softphone.gateway.tokens import VerifiedToken
from softphone.signaling.messages import HEARTBEAT, Message, encode, type_of

log = logging.getLogger("softphone.gateway.connection")

_ids = itertools.count(1)


@attrs.frozen
class _CloseRequest:
    """The writer's instruction to close the socket after the frames before it."""

    code: int
    reason: str


class ClientConnection:
    """A connected client: its socket, its verified token, its registration, its queue."""

    def __init__(self, websocket: ServerConnection, limits: Limits) -> None:
        loop = asyncio.get_running_loop()
        self.id = next(_ids)
        self.websocket = websocket
        self.limits = limits
        self.token: VerifiedToken | None = None
        self.registered_as: Address | None = None
        """The (account, identity) this connection is registered under in presence."""
        self.reconnect_timeout_s = 0
        self.closed = False
        """True once closing started: nothing more is queued for this client."""
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.opened_at = self.last_inbound = loop.time()
        self.inbound = FrameBucket(limits.max_frame_rate, limits.frame_burst, self.opened_at)
        self._queue: collections.deque[str | _CloseRequest] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._abort_timer: asyncio.TimerHandle | None = None
        self._writer = asyncio.create_task(self._write_loop())

    @property
    def identity(self) -> str | None:
        """The identity of the last valid token, or None before one was accepted."""
        return self.token.identity if self.token else None

    @property
    def account_sid(self) -> str | None:
        """The account of the last valid token, or None before one was accepted."""
        return self.token.account_sid if self.token else None

    @property
    def remote(self) -> Any:
        """The peer's socket address (for logs)."""
        return self.websocket.remote_address

    # -- sending ---------------------------------------------------------------------------
    def send(self, message: Message) -> bool:
        """Queue one message; False (nothing raised) if the connection is closing or gone."""
        if not self._enqueue(encode(message)):
            return False
        log.debug("conn %d <- %s", self.id, type_of(message))
        return True

    def send_heartbeat(self) -> bool:
        """Queue the ``"\\n"`` keep-alive (the JS client drops a socket silent for 15 s)."""
        return self._enqueue(HEARTBEAT)

    def _enqueue(self, frame: str) -> bool:
        if self.closed:
            return False
        size = len(frame)
        if self._queued_bytes + size > self.limits.send_queue_bytes:
            log.warning(
                "conn %d cannot keep up (%d bytes waiting): dropping it",
                self.id,
                self._queued_bytes,
            )
            self.abort()
            return False
        self._queue.append(frame)
        self._queued_bytes += size
        self._wakeup.set()
        return True

    # -- closing ---------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued; drop the socket if that takes too long."""
        if self.closed:
            return
        self.closed = True
        self._queue.append(_CloseRequest(code, reason))
        self._wakeup.set()
        self._abort_timer = asyncio.get_running_loop().call_later(
            self.limits.close_timeout_s, self.abort
        )

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (never waits)."""
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._wakeup.set()
        transport = self.websocket.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def finish(self) -> None:
        """Make sure the socket ends and the writer is done (the handler is returning)."""
        self.close(1000)
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()

    async def _write_loop(self) -> None:
        """Hand queued frames to the socket in order; close when told to."""
        try:
            while True:
                while not self._queue:
                    if self.closed:  # aborted: nothing left to write
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                item = self._queue.popleft()
                if isinstance(item, _CloseRequest):
                    await self.websocket.close(item.code, item.reason)
                    return
                self._queued_bytes -= len(item)
                await self.websocket.send(item)
        except ConnectionClosed:
            self.closed = True
        except OSError as exc:  # the transport failed under us
            log.info("conn %d: send failed: %s", self.id, exc)
            self.abort()

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<ClientConnection {self.id} identity={self.identity!r}>"
