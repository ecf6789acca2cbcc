"""``MediaAgent``: the far half of VDI-style media redirection.

It runs next to the user's audio hardware (``softphone media-agent``) and owns,
per app connection, the peer connections and the audio devices they use. The
app keeps signaling and drives the agent over one WebSocket
(:mod:`softphone.agent.protocol`): create a peer connection, make or answer an
offer with a given input device, mute, send DTMF, switch the input, close.
Received audio plays on the agent's output device; DTMF and connection-state
events are pushed back. When the app goes away, its peer connections and
devices are closed.

Devices and WebRTC come from the agent's own plugin manager, so the agent can
use every backend (PortAudio sound cards, tones, files) and plugin the app can.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from softphone.agent.protocol import (
    PROTOCOL_VERSION,
    Event,
    ProtocolError,
    Request,
    Response,
    decode,
    encode,
    error_response,
)
from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.media.peer_connection import DEFAULT_CODEC_PREFERENCES
from softphone.plugins.manager import SoftphonePluginManager
from softphone.plugins.types import PeerConnectionLike

__all__ = ["MediaAgent"]

log = logging.getLogger("softphone.agent")


class _AgentCall:
    """One peer connection in the agent, with the input and output it uses."""

    def __init__(self, pc: PeerConnectionLike, output: AudioSink) -> None:
        self.pc = pc
        self.output = output
        self.source: AudioSource | None = None

    def use_source(self, source: AudioSource) -> None:
        old, self.source = self.source, source
        self.pc.replace_source(source)
        if old is not None:
            old.close()

    async def close(self) -> None:
        await self.pc.close()
        if self.source is not None:
            self.source.close()
            self.source = None
        self.output.close()


class _Session:
    """One app connection: its peer connections, closed when it goes away."""

    def __init__(self, agent: MediaAgent, connection: ServerConnection) -> None:
        self.agent = agent
        self.connection = connection
        self.calls: dict[str, _AgentCall] = {}
        self.greeted = agent.secret is None
        self._ids = itertools.count(1)
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
            "hello": self.hello,
            "enumerate_devices": self.enumerate_devices,
            "create_pc": self.create_pc,
            "create_offer": self.create_offer,
            "apply_answer": self.apply_answer,
            "create_answer": self.create_answer,
            "mute": self.mute,
            "replace_source": self.replace_source,
            "insert_dtmf": self.insert_dtmf,
            "get_stats": self.get_stats,
            "close": self.close_pc,
        }

    async def send(self, message: Response | Event) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(encode(message))

    def push(self, event: str, **params: Any) -> None:
        """Send an event from a synchronous callback."""
        task = asyncio.ensure_future(self.send(Event(event, params)))
        self.agent._tasks.add(task)
        task.add_done_callback(self.agent._tasks.discard)

    async def handle(self, request: Request) -> None:
        try:
            if not self.greeted and request.method != "hello":
                raise PermissionError("say hello (with the agent's secret) first")
            result = await self._handlers[request.method](request.params)
        except Exception as exc:
            if not isinstance(exc, (PermissionError, ValueError, KeyError, LookupError)):
                log.warning("agent request %s failed: %s", request.method, exc)
            await self.send(error_response(request.id, exc))
            return
        await self.send(Response(request.id, result=result))

    def _call(self, params: Mapping[str, Any]) -> _AgentCall:
        pc_id = params.get("pc")
        call = self.calls.get(pc_id) if isinstance(pc_id, str) else None
        if call is None:
            raise KeyError(f"no peer connection {pc_id!r}")
        return call

    async def _open_source(self, params: Mapping[str, Any]) -> AudioSource:
        device_id = params.get("source") or self.agent.default_input
        return await self.agent.plugins.get_user_media(
            {"audio": {"deviceId": {"exact": device_id}} if device_id else True}, device_id
        )

    # -- methods -----------------------------------------------------------------------
    async def hello(self, params: Mapping[str, Any]) -> dict[str, Any]:
        secret = self.agent.secret
        given = params.get("secret")
        if secret is not None and not (
            isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())
        ):
            raise PermissionError("wrong or missing secret")
        self.greeted = True
        return {"version": PROTOCOL_VERSION, "agent": "softphone"}

    async def enumerate_devices(self, params: Mapping[str, Any]) -> list[dict[str, str]]:
        return [d.to_json() for d in await self.agent.plugins.enumerate_devices()]

    async def create_pc(self, params: Mapping[str, Any]) -> dict[str, Any]:
        configuration = params.get("configuration") or {}
        options = types.SimpleNamespace(
            codec_preferences=tuple(params.get("codec_preferences") or DEFAULT_CODEC_PREFERENCES),
            max_average_bitrate=params.get("max_average_bitrate"),
        )
        pc = self.agent.plugins.create_peer_connection(configuration, options)
        output_id = params.get("output") or self.agent.default_output
        output = await self.agent.plugins.get_output_sink(output_id)
        pc.set_remote_sink(output)
        pc_id = f"pc{next(self._ids)}"
        pc.on_dtmf = lambda digit: self.push("dtmf", pc=pc_id, digit=digit)
        pc.on_connection_state_change = lambda state: self.push(
            "connectionstatechange", pc=pc_id, state=state
        )
        pc.muted = bool(params.get("muted", False))
        self.calls[pc_id] = _AgentCall(pc, output)
        return {"pc": pc_id}

    def _negotiated(self, call: _AgentCall) -> dict[str, Any]:
        return {"codec": call.pc.codec, "can_insert_dtmf": call.pc.can_insert_dtmf}

    async def create_offer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call(params)
        source = await self._open_source(params)
        call.source = source
        return {"sdp": await call.pc.create_offer(source)}

    async def apply_answer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call(params)
        await call.pc.apply_answer(str(params["sdp"]))
        return self._negotiated(call)

    async def create_answer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call(params)
        source = await self._open_source(params)
        call.source = source
        sdp = await call.pc.create_answer(str(params["sdp"]), source)
        return {"sdp": sdp, **self._negotiated(call)}

    async def mute(self, params: Mapping[str, Any]) -> None:
        self._call(params).pc.muted = bool(params.get("muted", True))

    async def replace_source(self, params: Mapping[str, Any]) -> None:
        call = self._call(params)
        call.use_source(await self._open_source(params))

    async def insert_dtmf(self, params: Mapping[str, Any]) -> None:
        call = self._call(params)
        await call.pc.insert_dtmf(
            str(params["tones"]),
            int(params.get("duration_ms", 160)),
            int(params.get("gap_ms", 70)),
        )

    async def get_stats(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(params).pc.get_stats()

    async def close_pc(self, params: Mapping[str, Any]) -> None:
        pc_id = params.get("pc")
        call = self.calls.pop(pc_id, None) if isinstance(pc_id, str) else None
        if call is not None:
            await call.close()
            self.push("closed", pc=pc_id)

    async def close_all(self) -> None:
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            with contextlib.suppress(Exception):
                await call.close()


class MediaAgent:
    """A WebSocket server owning peer connections and audio devices for remote apps.

    ``plugins`` supplies devices and WebRTC (default: a manager with the
    built-ins and entry-point plugins). ``secret``, when set, must be presented
    in ``hello``. ``default_input`` / ``default_output`` are the device ids used
    when the app names none.
    """

    def __init__(
        self,
        plugins: SoftphonePluginManager | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str | None = None,
        default_input: str | None = None,
        default_output: str = "default",
    ) -> None:
        self.plugins = plugins if plugins is not None else SoftphonePluginManager()
        self.host = host
        self.port = port
        self.secret = secret
        self.default_input = default_input
        self.default_output = default_output
        self.sessions: set[_Session] = set()
        self._server: Server | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def url(self) -> str:
        """``ws://host:port`` once started."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free one, readable from :attr:`port` afterwards)."""
        self._server = await serve(
            self._serve, self.host, self.port, ping_interval=20, max_size=2**22
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("media agent listening on %s", self.url)

    async def _serve(self, connection: ServerConnection) -> None:
        session = _Session(self, connection)
        self.sessions.add(session)
        pending: set[asyncio.Task[None]] = set()
        try:
            async for text in connection:
                try:
                    message = decode(text)
                except ProtocolError as exc:
                    log.warning("bad message from %s: %s", connection.remote_address, exc)
                    continue
                if not isinstance(message, Request):
                    continue
                # Requests run concurrently: a slow create_offer must not hold up a mute.
                task = asyncio.create_task(session.handle(message))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in list(pending):
                task.cancel()
            await session.close_all()
            self.sessions.discard(session)

    async def stop(self) -> None:
        """Close every session's media and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for session in list(self.sessions):
            await session.close_all()
        await self.plugins.aclose()
