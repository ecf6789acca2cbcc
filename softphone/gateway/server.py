"""The gateway: what Twilio is for the JS SDK, on ``/signal`` (ws or wss).

One :class:`Gateway` is one edge. It verifies access tokens at ``listen``,
answers with ``connected``, keeps the registration table for ``register``, sends
heartbeats, and hands call messages to its :class:`~softphone.gateway.calls.CallRouter`.
It speaks the codec in :mod:`softphone.signaling.messages`, the same one the SDK uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import attrs
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from softphone.gateway.accounts import AccountStore
from softphone.gateway.connection import ClientConnection
from softphone.gateway.presence import Presence
from softphone.gateway.tokens import TokenError, verify_token
from softphone.signaling.messages import (
    C2S,
    Close,
    Connected,
    Error,
    Heartbeat,
    Listen,
    MalformedMessage,
    Message,
    Offline,
    Ready,
    Register,
    decode,
    type_of,
)
from softphone.signaling.params import reconnect_timeout_seconds

log = logging.getLogger("softphone.gateway")

MALFORMED_REQUEST = 31100
AUTHORIZATION_ERROR = 31201
TOKEN_EXPIRED = 31205


@attrs.define(kw_only=True)
class GatewayConfig:
    """How one gateway process (one edge) presents itself and behaves."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port (see :attr:`Gateway.port` once started)."""
    ssl_context: ssl.SSLContext | None = None
    edge: str = "loopback"
    region: str = "LOOPBACK"
    home: str = "loopback"
    heartbeat_interval_s: float = 5.0
    """Server heartbeat period; the JS client gives up after 15 s of silence."""
    idle_timeout_s: float = 45.0
    """Close a socket from which nothing (not even a heartbeat echo) came for this long."""
    media_host: str = "127.0.0.1"
    """Address the gateway's media legs bind and advertise."""
    clock: Callable[[], float] = time.time
    """Wall clock for token checks (tests pass a fake one)."""


class Gateway:
    """A running signaling endpoint plus the call machinery behind it."""

    def __init__(self, accounts: AccountStore, config: GatewayConfig | None = None) -> None:
        self.accounts = accounts
        self.config = config or GatewayConfig()
        self.presence = Presence()
        self.connections: set[ClientConnection] = set()
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        from softphone.gateway.calls import CallRouter  # local: calls imports this module

        self.calls = CallRouter(self)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> Gateway:
        """Bind and start serving; returns self so ``gw = await Gateway(...).start()`` works."""
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            process_request=self._check_path,
            ping_interval=None,
            max_size=2**20,
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        log.info("gateway edge %s listening on %s", self.config.edge, self.url)
        return self

    async def stop(self) -> None:
        """End every call, close every socket and stop listening."""
        await self.calls.shutdown()
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise RuntimeError("gateway not started")
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def host_port(self) -> str:
        """``host:port``: what a client passes as ``chunderw``."""
        return f"{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        """The full signaling URL."""
        scheme = "wss" if self.config.ssl_context else "ws"
        return f"{scheme}://{self.host_port}/signal"

    # -- connection handling -----------------------------------------------------------
    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if not path.endswith("/signal"):
            return connection.respond(HTTPStatus.NOT_FOUND, "softphone gateway: use /signal\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        conn = ClientConnection(websocket)
        self.connections.add(conn)
        log.info("conn %d open from %s", conn.id, conn.remote)
        try:
            with contextlib.suppress(ConnectionClosed):  # a dropped socket ends the loop
                async for frame in websocket:
                    conn.last_inbound = asyncio.get_running_loop().time()
                    await self._on_frame(conn, frame)
        finally:
            conn.closed = True
            self.connections.discard(conn)
            if conn.expiry_timer:
                conn.expiry_timer.cancel()
            if conn.identity:
                self.presence.unregister(conn.identity, conn)
            await self.calls.on_connection_closed(conn)
            log.info("conn %d closed (%s)", conn.id, websocket.close_code)

    async def _on_frame(self, conn: ClientConnection, frame: str | bytes) -> None:
        try:
            message = decode(frame, C2S)
        except MalformedMessage as exc:
            log.warning("conn %d sent a malformed frame: %s", conn.id, exc.reason)
            await conn.send(Error.of(MALFORMED_REQUEST, f"Malformed request: {exc.reason}"))
            return
        if isinstance(message, Heartbeat):
            return
        log.debug("conn %d -> %s", conn.id, type_of(message))
        if isinstance(message, Listen):
            await self._on_listen(conn, message)
        elif conn.token is None:
            await conn.send(
                Error.of(AUTHORIZATION_ERROR, "Send a valid 'listen' with a token first")
            )
        elif isinstance(message, Register):
            await self._on_register(conn, message)
        else:
            await self.calls.on_message(conn, message)

    async def _on_listen(self, conn: ClientConnection, message: Listen) -> None:
        now = self.config.clock()
        try:
            token = verify_token(message.token, self.accounts, now=now)
        except TokenError as exc:
            log.info("conn %d: token rejected (%d %s)", conn.id, exc.code, exc.message)
            await conn.send(Error.of(exc.code, exc.message))
            await conn.send(Close())
            return
        previous = conn.identity
        if previous is not None and previous != token.identity and conn.registered:
            self.presence.unregister(previous, conn)
            self.presence.register(token.identity, conn)
        conn.token = token
        conn.reconnect_timeout_s = reconnect_timeout_seconds(message.reconnect_timeout)
        self._arm_expiry(conn, token.ttl(now))
        await conn.send(
            Connected(
                edge=self.config.edge,
                region=self.config.region,
                home=self.config.home,
                token={"identity": token.identity, "ttl": token.ttl(now)},
            )
        )
        await self.calls.on_listen(conn)

    def _arm_expiry(self, conn: ClientConnection, ttl_s: float) -> None:
        if conn.expiry_timer:
            conn.expiry_timer.cancel()
        loop = asyncio.get_running_loop()
        token = conn.token
        conn.expiry_timer = loop.call_later(
            max(0.0, ttl_s), lambda: asyncio.ensure_future(self._on_token_expired(conn, token))
        )

    async def _on_token_expired(self, conn: ClientConnection, token: Any) -> None:
        """The token ran out without an update: drop the registration, tell the client."""
        if conn.token is not token or conn.closed:
            return
        log.info("conn %d: token of %s expired", conn.id, conn.identity)
        await conn.send(Error.of(TOKEN_EXPIRED, "Access token expired"))
        if conn.registered and conn.identity:
            conn.registered = False
            self.presence.unregister(conn.identity, conn)
            await conn.send(Offline())

    async def _on_register(self, conn: ClientConnection, message: Register) -> None:
        assert conn.identity is not None
        if message.audio:
            if conn.token is not None and not conn.token.incoming_allow:
                await conn.send(
                    Error.of(AUTHORIZATION_ERROR, "Token does not allow incoming calls")
                )
                return
            conn.registered = True
            self.presence.register(conn.identity, conn)
            await conn.send(Ready())
        else:
            conn.registered = False
            self.presence.unregister(conn.identity, conn)
            await conn.send(Offline())

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            now = asyncio.get_running_loop().time()
            for conn in list(self.connections):
                if now - conn.last_inbound > self.config.idle_timeout_s:
                    log.info("conn %d silent for %.0f s: closing", conn.id, now - conn.last_inbound)
                    await conn.websocket.close(1001, "idle")
                    continue
                await conn.send_heartbeat()

    async def broadcast(self, message: Message) -> None:
        """Send one message to every connection (used by ``stop`` and tests)."""
        await asyncio.gather(*(conn.send(message) for conn in list(self.connections)))
