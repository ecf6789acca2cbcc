"""The gateway: what Twilio is for the JS SDK, on ``/signal`` (ws or wss).

One :class:`Gateway` is one edge. It verifies access tokens at ``listen``,
answers with ``connected``, keeps the registration table for ``register``, sends
heartbeats, and hands call messages to its :class:`~softphone.gateway.calls.CallRouter`.
It speaks the codec in :mod:`softphone.signaling.messages`, the same one the SDK uses.

It is built to be reachable by clients it does not trust (:mod:`softphone.gateway.limits`):
every connection has its own bounded send queue, so one that does not read never
delays anybody else's heartbeat; inbound frames are rate-limited per connection;
idle sockets and sockets that never ``listen`` are closed, all concurrently; a token
stops authorizing anything new once it expires; repeated log lines are throttled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from softphone.gateway import exposure, log_throttle
from softphone.gateway.accounts import AccountStore
from softphone.gateway.app.play_audio import PlayAudio
from softphone.gateway.app.services import AppServices
from softphone.gateway.call_history import CallHistory
from softphone.gateway.call_store import AsyncCallStore, CallStore, Retention
from softphone.gateway.calls import CallRouter
from softphone.gateway.connection import ClientConnection
from softphone.gateway.insights_persist import StoreSink
from softphone.gateway.insights_store import InsightsStore, LiveCalls
from softphone.gateway.leg_media import LegMedia, LegMediaConfig
from softphone.gateway.limits import Limits
from softphone.gateway.presence import Presence
from softphone.gateway.rest_api import RestApi
from softphone.gateway.shared_port import serve_shared
from softphone.gateway.tls_read_buffer import shrink_tls_read_buffer
from softphone.gateway.tokens import TokenError, VerifiedToken, verify_token
from softphone.gateway.traversal import TraversalConfig
from softphone.insights import endpoint
from softphone.media.peer_connection import PeerConnection
from softphone.signaling.codes import (
    AUTHORIZATION_ERROR,
    MALFORMED_REQUEST,
    RATE_EXCEEDED,
    TOKEN_EXPIRED,
)
from softphone.signaling.messages import (
    C2S,
    Close,
    Connected,
    Error,
    Hangup,
    Heartbeat,
    Invite,
    Listen,
    MalformedMessage,
    Message,
    Offline,
    Ready,
    Register,
    decode,
    type_of,
)
from softphone.signaling.params import reconnect_window_s

if TYPE_CHECKING:
    from softphone.gateway.cluster.node import ClusterNode

log = logging.getLogger("softphone.gateway")

RETRY_AFTER_S = 5
"""``retryAfter`` sent to a client closed for flooding: the JS SDK waits that long."""
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
MAX_REASON_CHARS = 200
"""Longest part of a client's frame echoed back in an error (the rest is cut)."""


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
    media: LegMediaConfig = attrs.field(factory=LegMediaConfig)
    """Where media legs bind, what address they advertise, their ports, TURN use."""
    traversal: TraversalConfig = attrs.field(factory=TraversalConfig)
    """STUN/TURN servers handed out by the REST API's Tokens resource."""
    rest: bool = True
    """Serve the REST API (and insights ingestion) on the gateway's own port, beside
    ``/signal``, with the same TLS setting."""
    media_dir: Path | None = None
    """Audio files TwiML ``<Play>`` may name as ``file:NAME`` (None: no local files)."""
    api_port: int | None = None
    """Also serve the REST API on this port of its own (same host and TLS); None: only
    on the gateway's port."""
    clock: Callable[[], float] = time.time
    """Wall clock for token checks (tests pass a fake one)."""
    limits: Limits = attrs.field(factory=Limits)
    """What one client may ask of the gateway (frames, queues, calls, timeouts)."""
    allow_public_dev_account: bool = False
    """Serve beyond loopback even though an API key uses the published dev secret."""
    db_path: Path | None = None
    """The durable call store's file (the call history survives restarts); None: no store."""
    retention: Retention = attrs.field(factory=Retention)
    """How much call history the store keeps."""
    redis_url: str | None = None
    """Join the cluster of gateways sharing this Redis (``redis://host:port/db``):
    presence is shared and calls reach devices registered on the other gateways.
    None: a gateway on its own (needs the ``redis`` package when set)."""
    gateway_id: str | None = None
    """This gateway's id in the cluster; None: ``<edge>-<random>``."""
    cluster_ttl_s: float = 30.0
    """How long this gateway's presence entries count in Redis without a refresh."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT``: several worker processes share the port (the kernel
    spreads connections among them); only with ``redis_url``, so they share presence."""


class Gateway:
    """A running signaling endpoint plus the call machinery behind it."""

    def __init__(
        self,
        accounts: AccountStore,
        config: GatewayConfig | None = None,
        *,
        leg_media: Callable[[], PeerConnection] | None = None,
    ) -> None:
        """``leg_media`` replaces the default :class:`LegMedia` built from the config."""
        self.accounts = accounts
        self.config = config or GatewayConfig()
        self.presence = Presence()
        self.connections: set[ClientConnection] = set()
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.leg_media = leg_media or LegMedia(
            self.config.media, self.config.traversal, clock=self.config.clock
        )
        self.calls = CallRouter(
            accounts,
            self.presence,
            self.config.limits,
            self.leg_media,
            apps=AppServices(audio=PlayAudio(self.config.media_dir)),
        )
        self.rest_api: RestApi | None = None
        """The REST API once started (``api_port`` set)."""
        self.call_store: AsyncCallStore | None = None
        """The durable call store once started (``db_path`` set)."""
        self.cluster: ClusterNode | None = None
        """This gateway's cluster membership once started (``redis_url`` set)."""
        log_throttle.install()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> Gateway:
        """Bind and start serving; returns self so ``gw = await Gateway(...).start()`` works.

        Raises :class:`~softphone.gateway.exposure.ExposureError` (a ValueError) before
        binding a non-loopback address with a publicly known API key secret, unless
        ``allow_public_dev_account`` is set.
        """
        exposed = exposure.check(
            self.config.host,
            self.accounts,
            allow_public_secret=self.config.allow_public_dev_account,
        )
        if self.config.redis_url is not None:  # a missing redis package fails before binding
            self.cluster = self._cluster_node(self.config.redis_url)
        if self.config.db_path is not None:  # a bad file fails before anything binds
            store = await AsyncCallStore.open(self.config.db_path, retention=self.config.retention)
            await store.run(
                CallStore.close_unfinished, now=self.config.clock(), reason="gateway stopped"
            )
            self.call_store = store
            self.calls.history = CallHistory(store, self.config.clock)
            self.calls.apps.store = store
        limits = self.config.limits
        if self.config.rest:
            self.rest_api = RestApi(
                self.accounts,
                self.config.traversal,
                clock=self.config.clock,
                insights=InsightsStore(
                    LiveCalls(self.calls),
                    sink=StoreSink(self.call_store) if self.call_store is not None else None,
                ),
                calls=self.calls,
                call_store=self.call_store,
            )
            await self.rest_api.setup()
        if self.config.ssl_context is not None:
            shrink_tls_read_buffer()  # one socket per device: 256 KiB each otherwise
        self._server = await serve_shared(
            self._handle,
            self.config.host,
            self.config.port,
            http=self.rest_api.http_protocol if self.rest_api is not None else None,
            ssl_context=self.config.ssl_context,
            process_request=self._check_path,
            max_size=limits.max_frame_bytes or None,
            close_timeout=limits.close_timeout_s,
            reuse_port=self.config.reuse_port,
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        log.info("gateway edge %s listening on %s", self.config.edge, self.url)
        if self.cluster is not None:  # Redis unreachable is retried in the background
            await self.cluster.start()
        if self.rest_api is not None:
            tls = self.config.ssl_context is not None
            self.rest_api.served_at(self.config.host, self.port, tls=tls)
            if self.config.api_port is not None:
                await self.rest_api.start(
                    self.config.host, self.config.api_port, self.config.ssl_context
                )
            self.calls.apps.public_url = lambda: self.rest_api.url if self.rest_api else None
            log.info("REST API on %s", self.rest_api.url)
        if exposed:
            log.warning(
                "INSECURE: %s is reachable from other machines and accepts tokens signed "
                "with the published development secret: anyone there can place calls",
                self.url,
            )
        return self

    def _cluster_node(self, url: str) -> ClusterNode:
        """This gateway's membership of the cluster sharing the Redis at ``url`` (not yet
        started). ImportError with the install hint when the ``redis`` package is missing."""
        from softphone.gateway.cluster.node import ClusterNode, new_gateway_id

        return ClusterNode(
            url,
            self.config.gateway_id or new_gateway_id(self.config.edge),
            self.calls,
            self.presence,
            edge=self.config.edge,
            region=self.config.region,
            ttl_s=self.config.cluster_ttl_s,
        )

    async def stop(self) -> None:
        """End every call, close every socket and stop listening."""
        await self.calls.shutdown()
        if self.cluster is not None:  # after the calls: their hangups reach the far side
            await self.cluster.stop()
            self.cluster = None
        if self.rest_api is not None:
            await self.rest_api.stop()
            self.rest_api = None
        if self.call_store is not None:
            self.calls.history = None
            self.calls.apps.store = None
            await self.call_store.close()
            self.call_store = None
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
        conn = ClientConnection(websocket, self.config.limits)
        self.connections.add(conn)
        log.info("conn %d open from %s", conn.id, conn.remote)
        loop = asyncio.get_running_loop()
        try:
            with contextlib.suppress(ConnectionClosed):  # a dropped socket ends the loop
                async for frame in websocket:
                    now = loop.time()
                    conn.last_inbound = now
                    if not conn.inbound.allow(now):
                        self._refuse_flood(conn)
                    else:
                        await self._on_frame(conn, frame)
                    if conn.closed:
                        break
        finally:
            conn.close()
            self.connections.discard(conn)
            self._unregister(conn)
            await self.calls.on_connection_closed(conn)
            await conn.finish()
            log.info("conn %d closed (%s)", conn.id, websocket.close_code)

    def _refuse_flood(self, conn: ClientConnection) -> None:
        limits = self.config.limits
        log.warning("conn %d sent over %g frames/s: closing it", conn.id, limits.max_frame_rate)
        conn.send(
            Error(
                error={
                    "code": RATE_EXCEEDED,
                    "message": f"Over {limits.max_frame_rate:g} frames per second",
                    "retryAfter": RETRY_AFTER_S,
                }
            )
        )
        conn.close(POLICY_VIOLATION, "frame rate limit")

    async def _on_frame(self, conn: ClientConnection, frame: str | bytes) -> None:
        try:
            message = decode(frame, C2S)
        except MalformedMessage as exc:
            reason = exc.reason[:MAX_REASON_CHARS]
            log.warning("conn %d sent a malformed frame: %s", conn.id, reason)
            conn.send(Error.of(MALFORMED_REQUEST, f"Malformed request: {reason}"))
            return
        if isinstance(message, Heartbeat):
            return
        log.debug("conn %d -> %.64s", conn.id, type_of(message))
        if self._has_oversized_id(message):
            limit = self.config.limits.max_id_length
            conn.send(Error.of(MALFORMED_REQUEST, f"callsid and voiceeventsid: at most {limit}"))
        elif isinstance(message, Listen):
            await self._on_listen(conn, message)
        elif conn.token is None:
            conn.send(Error.of(AUTHORIZATION_ERROR, "Send a valid 'listen' with a token first"))
        elif self._needs_current_token(message) and self._expired(conn.token):
            self._refuse_expired(conn, message)
        elif isinstance(message, Register):
            self._on_register(conn, message)
        else:
            await self.calls.on_message(conn, message)

    def _has_oversized_id(self, message: Message) -> bool:
        limit = self.config.limits.max_id_length
        ids = (getattr(message, "callsid", None), getattr(message, "voiceeventsid", None))
        return any(isinstance(value, str) and len(value) > limit for value in ids)

    # -- tokens ------------------------------------------------------------------------
    def _expired(self, token: VerifiedToken) -> bool:
        return token.expires_at <= self.config.clock()

    @staticmethod
    def _needs_current_token(message: Message) -> bool:
        """Placing or taking a call and registering need a token that has not expired.

        Frames about calls already up (hangup, DTMF, messages, ICE restarts) do not:
        a live call outlasts the token it was placed with.
        """
        return isinstance(message, Invite) or (isinstance(message, Register) and message.audio)

    def _refuse_expired(self, conn: ClientConnection, message: Message) -> None:
        text = "Access token expired: send 'listen' with a new one"
        error = {"code": TOKEN_EXPIRED, "message": text}
        if isinstance(message, Invite):
            conn.send(Hangup(callsid=message.callsid, error=error))
        else:
            conn.send(Error(error=error))

    async def _on_listen(self, conn: ClientConnection, message: Listen) -> None:
        now = self.config.clock()
        try:
            token = verify_token(message.token, self.accounts, now=now)
        except TokenError as exc:
            log.info("conn %d: token rejected (%d %s)", conn.id, exc.code, exc.message)
            conn.send(Error.of(exc.code, exc.message))
            conn.send(Close())
            # whatever it was before, this socket is no longer anybody's
            if conn.expiry_timer:
                conn.expiry_timer.cancel()
            self._unregister(conn)
            conn.token = None
            conn.close(POLICY_VIOLATION, "invalid token")
            return
        address = (token.account_sid, token.identity)
        if conn.registered_as is not None and conn.registered_as != address:
            self._unregister(conn)
            self.presence.register(*address, conn)
            conn.registered_as = address
        conn.token = token
        conn.reconnect_timeout_s = reconnect_window_s(message.reconnect_timeout)
        self._arm_expiry(conn, token.expires_at - now)
        insights = self.rest_api.insights_url(conn.host) if self.rest_api else None
        conn.send(
            Connected(
                edge=self.config.edge,
                region=self.config.region,
                home=self.config.home,
                token={"identity": token.identity, "ttl": token.ttl(now)},
                extra={endpoint.CONNECTED_FIELD: insights} if insights else {},
            )
        )
        await self.calls.on_listen(conn)

    def _arm_expiry(self, conn: ClientConnection, ttl_s: float) -> None:
        if conn.expiry_timer:
            conn.expiry_timer.cancel()
        token = conn.token
        conn.expiry_timer = asyncio.get_running_loop().call_later(
            max(0.0, ttl_s), self._on_token_expired, conn, token
        )

    def _on_token_expired(self, conn: ClientConnection, token: VerifiedToken | None) -> None:
        """The token ran out without an update: drop the registration, tell the client."""
        if conn.token is not token or conn.closed:
            return
        log.info("conn %d: token of %s expired", conn.id, conn.identity)
        conn.send(Error.of(TOKEN_EXPIRED, "Access token expired"))
        if self._unregister(conn):
            conn.send(Offline())

    # -- presence ----------------------------------------------------------------------
    def _on_register(self, conn: ClientConnection, message: Register) -> None:
        token = conn.token
        assert token is not None
        if message.audio:
            if not token.incoming_allow:
                conn.send(Error.of(AUTHORIZATION_ERROR, "Token does not allow incoming calls"))
                return
            address = (token.account_sid, token.identity)
            if conn.registered_as != address:
                self._unregister(conn)
            self.presence.register(*address, conn)
            conn.registered_as = address
            conn.send(Ready())
        else:
            self._unregister(conn)
            conn.send(Offline())

    def _unregister(self, conn: ClientConnection) -> bool:
        """Take ``conn`` out of presence; True if it was registered."""
        address, conn.registered_as = conn.registered_as, None
        return address is not None and self.presence.unregister(*address, conn)

    # -- liveness ----------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        """Every interval: a heartbeat to each socket, and close the idle ones.

        Nothing here waits on a client: heartbeats are queued and closes run in each
        connection's own writer.
        """
        interval = self.config.heartbeat_interval_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for conn in list(self.connections):
                if conn.closed:
                    continue
                silent = now - conn.last_inbound
                if silent > self.config.idle_timeout_s:
                    log.info("conn %d silent for %.0f s: closing", conn.id, silent)
                    conn.close(GOING_AWAY, "idle")
                elif (
                    conn.token is None
                    and now - conn.opened_at > self.config.limits.listen_timeout_s
                ):
                    log.info("conn %d sent no valid listen: closing", conn.id)
                    conn.close(POLICY_VIOLATION, "no valid listen")
                else:
                    conn.send_heartbeat()

    def broadcast(self, message: Message) -> None:
        """Queue one message for every connection."""
        for conn in list(self.connections):
            conn.send(message)
