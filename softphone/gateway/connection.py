"""One signaling WebSocket as the gateway sees it: identity, token, liveness.

The connection knows how to send typed messages and heartbeats; what to do with
inbound messages is the :class:`~softphone.gateway.server.Gateway`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from softphone.gateway.tokens import VerifiedToken
from softphone.signaling.messages import HEARTBEAT, Message, encode, type_of

log = logging.getLogger("softphone.gateway.connection")

_ids = itertools.count(1)


class ClientConnection:
    """A connected client: its socket, its verified token and its registration."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.id = next(_ids)
        self.websocket = websocket
        self.token: VerifiedToken | None = None
        self.registered = False
        self.reconnect_timeout_s = 0
        self.closed = False
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.last_inbound = asyncio.get_running_loop().time()

    @property
    def identity(self) -> str | None:
        """The identity of the last valid token, or None before one was accepted."""
        return self.token.identity if self.token else None

    @property
    def remote(self) -> Any:
        """The peer's socket address (for logs)."""
        return self.websocket.remote_address

    async def send(self, message: Message) -> bool:
        """Send one message; False (and nothing raised) if the socket is already gone."""
        if self.closed:
            return False
        frame = encode(message)
        try:
            await self.websocket.send(frame)
        except ConnectionClosed:
            return False
        log.debug("conn %d <- %s", self.id, type_of(message))
        return True

    async def send_heartbeat(self) -> None:
        """Send the ``"\\n"`` keep-alive (the JS client drops a socket silent for 15 s)."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(HEARTBEAT)

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<ClientConnection {self.id} identity={self.identity!r}>"
