"""``AgentClient``: the app's end of the media-agent WebSocket.

Sends requests and matches responses by id; routes events to per-peer-
connection listeners. One client serves every call of a Device. Connecting is
lazy (the first request) and a lost connection fails every outstanding
request with ``ConnectionError``; the next request reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from softphone.agent.protocol import (
    PROTOCOL_VERSION,
    AgentError,
    Event,
    ProtocolError,
    Request,
    Response,
    decode,
    encode,
)

__all__ = ["AgentClient"]

log = logging.getLogger("softphone.agent.client")

EventListener = Callable[[str, Mapping[str, Any]], None]


class AgentClient:
    """Request/response and events over one WebSocket to a media agent at ``url``."""

    def __init__(self, url: str, secret: str | None = None, *, timeout_s: float = 15.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self._connection: ClientConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._listeners: dict[str, EventListener] = {}
        self.on_event: EventListener | None = None
        """Events not tied to a peer connection (e.g. ``devicechange``)."""

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is open."""
        return self._connection is not None

    async def connect(self) -> None:
        """Open the WebSocket and say hello (no-op when connected)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None:
                return
            try:
                connection = await asyncio.wait_for(
                    connect(self.url, max_size=2**22, open_timeout=self.timeout_s),
                    self.timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"media agent at {self.url} unreachable: {exc}") from exc
            self._connection = connection
            self._reader = asyncio.create_task(self._read(connection))
            try:
                hello = await self._send(
                    "hello", {"version": PROTOCOL_VERSION, "secret": self.secret}
                )
            except BaseException:
                await self.close()
                raise
            log.info("connected to media agent %s (protocol %s)", self.url, hello.get("version"))

    async def request(self, method: str, **params: Any) -> Any:
        """Send ``method`` and return its result; raises ``AgentError`` or ``ConnectionError``."""
        await self.connect()
        return await self._send(method, params)

    async def _send(self, method: str, params: Mapping[str, Any]) -> Any:
        connection = self._connection
        if connection is None:
            raise ConnectionError("not connected to the media agent")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await connection.send(encode(Request(request_id, method, params)))
            return await asyncio.wait_for(future, self.timeout_s)
        except ConnectionClosed as exc:
            raise ConnectionError("media agent connection closed") from exc
        finally:
            self._pending.pop(request_id, None)

    def add_listener(self, pc: str, listener: EventListener) -> None:
        """Route events about peer connection ``pc`` to ``listener(event, params)``."""
        self._listeners[pc] = listener

    def remove_listener(self, pc: str) -> None:
        """Stop routing events about ``pc``."""
        self._listeners.pop(pc, None)

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for text in connection:
                try:
                    message = decode(text)
                except ProtocolError as exc:
                    log.warning("bad message from the media agent: %s", exc)
                    continue
                if isinstance(message, Response):
                    self._resolve(message)
                elif isinstance(message, Event):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            if self._connection is connection:
                self._connection = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("media agent connection lost"))
            for listener in list(self._listeners.values()):
                with contextlib.suppress(Exception):
                    listener("disconnected", {})

    def _resolve(self, message: Response) -> None:
        future = self._pending.get(message.id)
        if future is None or future.done():
            return
        if message.error is not None:
            future.set_exception(
                AgentError(message.error.get("message", ""), message.error.get("type", "Error"))
            )
        else:
            future.set_result(message.result)

    def _dispatch(self, message: Event) -> None:
        pc = message.params.get("pc")
        listener = self._listeners.get(pc) if isinstance(pc, str) else self.on_event
        if listener is None:
            return
        try:
            listener(message.event, message.params)
        except Exception:
            log.exception("media agent event listener failed")

    async def close(self) -> None:
        """Close the WebSocket (the agent then closes this client's media)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
