"""Signaling (WebSocket) and the REST API (HTTP) on one port, with one TLS setting.

What: :func:`serve_shared` listens once and reads only the request line of each new
connection: a path ending in ``/signal`` goes to a websockets
:class:`~websockets.asyncio.server.ServerConnection` (the signaling handler, exactly
as ``websockets.serve`` would run it), any other path to the REST API's aiohttp
request handler. The chosen protocol takes over the transport (TLS already
terminated) and is fed the bytes read so far, so neither library knows the other is
there.

Why: Twilio serves its REST API and its signaling on well-known HTTPS ports; a
gateway that needs two ports (and two firewall rules, two certificates) is harder to
run. Both libraries stay in charge of what they do well (the WebSocket handshake and
frames; HTTP parsing, routing, bodies); this module only picks one per connection.

The glue around websockets' public :class:`ServerProtocol`, :class:`ServerConnection`
and :class:`Server` follows what ``websockets.asyncio.server.serve`` does for one
connection (handshake under ``open_timeout``, then the handler).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger("softphone.gateway.shared_port")

MAX_REQUEST_LINE = 8192
"""A request line longer than this is refused (no client sends one)."""
MAX_METHOD = 16
SIGNAL_PATH = "/signal"
OPEN_TIMEOUT_S = 10.0
"""The request line must arrive, and the WebSocket handshake end, within this."""

ProcessRequest = Callable[[ServerConnection, Any], Any]


class _FirstLine(asyncio.Protocol):
    """Holds a new connection until its request line says which protocol takes it."""

    def __init__(
        self,
        choose: Callable[[str], asyncio.Protocol],
        open_timeout: float,
    ) -> None:
        self._choose = choose
        self._open_timeout = open_timeout
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses)
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._open_timeout, self._transport.abort)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        line, found, _ = self._buffer.partition(b"\r\n")
        if not found and _looks_like_http(self._buffer):
            if len(self._buffer) > MAX_REQUEST_LINE:
                self._transport.abort()
            return
        # A whole request line, or bytes that are no HTTP at all (a TLS hello sent to a
        # plain port): the WebSocket side answers those at once with its own 400.
        if self._timer is not None:
            self._timer.cancel()
        parts = line.split(b" ") if found else []
        path = parts[1].decode("latin-1") if len(parts) == 3 else SIGNAL_PATH
        protocol = self._choose(path.split("?", 1)[0])
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(self._buffer)
        self._buffer = b""

    def eof_received(self) -> bool | None:
        return None  # close: nothing was chosen yet

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _looks_like_http(head: bytes) -> bool:
    """Could ``head`` still become an HTTP request line (``METHOD SP``…)?"""
    method, space, _ = head[: MAX_METHOD + 1].partition(b" ")
    if not space:
        return len(head) <= MAX_METHOD and (not head or (head.isalpha() and head.isupper()))
    return bool(method) and method.isalpha() and method.isupper()


def is_signaling(path: str) -> bool:
    """The signaling endpoint: ``/signal`` (under any prefix a proxy adds)."""
    return path.endswith(SIGNAL_PATH)


async def serve_shared(
    handler: Callable[[ServerConnection], Awaitable[None]],
    host: str,
    port: int,
    *,
    http: Callable[[], asyncio.Protocol] | None,
    ssl_context: ssl.SSLContext | None = None,
    process_request: ProcessRequest | None = None,
    max_size: int | None = None,
    close_timeout: float | None = 10.0,
    open_timeout: float = OPEN_TIMEOUT_S,
    reuse_port: bool = False,
) -> Server:
    """Serve WebSocket signaling on ``/signal`` and ``http()``'s protocol elsewhere.

    ``http`` None: every path goes to websockets (whose ``process_request`` answers
    the paths it does not serve). ``reuse_port``: bind with ``SO_REUSEPORT``, so several
    processes (``softphone gateway --workers N``) listen on the same port and the kernel
    spreads new connections among them. Returns websockets' :class:`Server` (``close()``,
    ``wait_closed()``, ``sockets`` as usual); it owns the listening socket.
    """

    def websocket_connection() -> ServerConnection:
        protocol = ServerProtocol(max_size=max_size, logger=server.logger)
        return ServerConnection(
            protocol, server, ping_interval=None, ping_timeout=None, close_timeout=close_timeout
        )

    async def run(connection: ServerConnection) -> None:
        try:
            async with asyncio.timeout(open_timeout):
                await connection.handshake(process_request)
            if connection.protocol.state is not State.OPEN:
                connection.transport.abort()
                return
            server.all_connections.add(connection)
            try:
                async with connection:
                    await handler(connection)
            except Exception:
                log.error("signaling connection handler failed", exc_info=True)
            finally:
                server.all_connections.discard(connection)
        except Exception:
            connection.transport.abort()  # handshake timed out or failed: free the socket
        finally:
            task = asyncio.current_task()
            if task is not None:
                server.handler_tasks.discard(task)

    def choose(path: str) -> asyncio.Protocol:
        if http is None or is_signaling(path):
            return websocket_connection()
        return http()

    async def listen() -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _FirstLine(choose, open_timeout),
            host,
            port,
            ssl=ssl_context,
            ssl_handshake_timeout=open_timeout if ssl_context is not None else None,
            reuse_port=reuse_port or None,
        )

    server = Server(listen, run)
    await server
    return server


__all__ = ["is_signaling", "serve_shared"]
