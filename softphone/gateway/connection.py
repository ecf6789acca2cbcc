"""One signaling WebSocket as the gateway sees it: identity, token, liveness, sending.

Sending never waits on the client. :meth:`ClientConnection.send` encodes the frame and
writes it to the socket's transport at once (websockets' Sans-I/O protocol makes the
frame; the transport buffers what the kernel does not take). A client that does not
read (or reads too slowly) only grows its own transport buffer; once that holds more
than ``send_queue_bytes`` the connection is dropped on the spot. Closing sends the
close frame after the frames already written (so an ``error`` reaches the client
before the close) and is bounded by ``close_timeout_s``, after which the socket is
aborted.

There is no task, queue or event per connection: an idle registered device costs only
its socket, its websockets connection and this object (``python -m benchmarks
--sections scale`` measures it).

What to do with inbound messages is the :class:`~softphone.gateway.server.Gateway`'s
business.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from softphone.gateway.limits import FrameBucket, Limits
from softphone.gateway.presence import Address
from softphone.gateway.tokens import VerifiedToken
from softphone.signaling.messages import HEARTBEAT, Message, encode, type_of

log = logging.getLogger("softphone.gateway.connection")

_ids = itertools.count(1)


class ClientConnection:
    """A connected client: its socket, its verified token, its registration, its queue."""

    def __init__(self, websocket: ServerConnection, limits: Limits) -> None:
        loop = asyncio.get_running_loop()
        self.id = next(_ids)
        self.websocket = websocket
        self.limits = limits
        request = websocket.request
        self.host: str | None = request.headers.get("Host") if request is not None else None
        """The ``Host`` the client asked for (the REST URLs it is told use it)."""
        if request is not None:  # the handshake is over: its headers are not needed again
            request.headers = Headers()
        websocket.response = None
        self.token: VerifiedToken | None = None
        self.registered_as: Address | None = None
        """The (account, identity) this connection is registered under in presence."""
        self.reconnect_timeout_s = 0
        self.closed = False
        """True once closing started: nothing more is sent to this client."""
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.opened_at = self.last_inbound = loop.time()
        self.inbound = FrameBucket(limits.max_frame_rate, limits.frame_burst, self.opened_at)
        self._closing: asyncio.Task[None] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None

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
        """Send one message; False (nothing raised) if the connection is closing or gone."""
        if not self._write(encode(message)):
            return False
        log.debug("conn %d <- %s", self.id, type_of(message))
        return True

    def send_heartbeat(self) -> bool:
        """Send the ``"\\n"`` keep-alive (the JS client drops a socket silent for 15 s)."""
        return self._write(HEARTBEAT)

    def _write(self, frame: str) -> bool:
        """Frame ``frame`` and hand it to the transport, or drop a client that lags."""
        if self.closed:
            return False
        websocket = self.websocket
        transport = websocket.transport
        if websocket.protocol.state is not State.OPEN or transport.is_closing():
            self.closed = True
            return False
        waiting = transport.get_write_buffer_size()
        if waiting + len(frame) > self.limits.send_queue_bytes:
            log.warning("conn %d cannot keep up (%d bytes waiting): dropping it", self.id, waiting)
            self.abort()
            return False
        websocket.protocol.send_text(frame.encode())
        try:
            websocket.send_data()
        except OSError as exc:  # the transport failed under us
            log.info("conn %d: send failed: %s", self.id, exc)
            self.abort()
            return False
        return True

    # -- closing ---------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already sent; drop the socket if that takes too long."""
        if self.closed:
            return
        self.closed = True
        self._closing = asyncio.create_task(self._close(code, reason))
        self._abort_timer = asyncio.get_running_loop().call_later(
            self.limits.close_timeout_s, self.abort
        )

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.websocket.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (never waits)."""
        self.closed = True
        transport = self.websocket.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def finish(self) -> None:
        """Make sure the socket ends (the handler is returning)."""
        self.close(1000)
        if self._closing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closing
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<ClientConnection {self.id} identity={self.identity!r}>"
