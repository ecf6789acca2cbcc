"""``MediaAgentPlugin``: put a Device's media in a media agent, keep signaling in the app.

Register it on a Device and every call's peer connection and audio devices
live in the agent (another process, in real use another host: the user's
thin client), while the Device keeps the signaling connection::

    device.plugins.register(MediaAgentPlugin("ws://thin-client:9555", secret="..."))

It implements three hooks:

* ``softphone_enumerate_devices``: the agent's devices, ids prefixed ``agent:``;
* ``softphone_get_user_media``: an :class:`AgentSource` naming the agent's
  device (the default input, or an ``agent:`` id the app selected);
* ``softphone_create_peer_connection``: a :class:`RemotePeerConnection` that
  drives a peer connection in the agent.

Switching ``device.audio.set_input_device("agent:...")`` mid-call switches the
agent's input in place. Remote audio plays on the agent's output device; the
app's own speaker sinks get none of it (that is the point).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from softphone.agent.client import AgentClient
from softphone.audio_backends.base import AudioSink, AudioSource, Pcm, silence
from softphone.audio_backends.devices import MediaDeviceInfo
from softphone.media.peer_connection import DEFAULT_CODEC_PREFERENCES
from softphone.plugins.markers import hookimpl

__all__ = ["AGENT_PREFIX", "AgentSource", "MediaAgentPlugin", "RemotePeerConnection"]

log = logging.getLogger("softphone.agent.plugin")

AGENT_PREFIX = "agent:"


class AgentSource:
    """An input device of the agent (a :class:`~softphone.plugins.types.RemoteSource`).

    ``remote_device_id`` is the id in the agent (None: the agent's default).
    Reading it here gives silence: the audio never enters this process.
    """

    def __init__(self, remote_device_id: str | None) -> None:
        self.remote_device_id = remote_device_id or ""

    def read(self, samples: int) -> Pcm:
        """Silence: the audio is in the agent."""
        return silence(samples)

    def close(self) -> None:
        """Nothing to release here (the agent closes the device with the call)."""


def _agent_device_id(source: AudioSource | None) -> str | None:
    if isinstance(source, AgentSource):
        return source.remote_device_id or None
    if source is None:
        return None
    raise ValueError(
        "a media-agent call cannot send audio from this process: select one of the agent's "
        f"input devices (ids starting with {AGENT_PREFIX!r}), not {type(source).__name__}"
    )


class RemotePeerConnection:
    """``PeerConnection``'s API, carried out by a peer connection in the media agent.

    Constructed synchronously; the agent-side peer connection is created by the
    first ``create_offer`` / ``create_answer``. Property reads (``codec``,
    ``local_sdp``, ``can_insert_dtmf``) return what the agent reported last.
    """

    def __init__(
        self,
        client: AgentClient,
        configuration: Mapping[str, Any],
        *,
        codec_preferences: Sequence[str] = DEFAULT_CODEC_PREFERENCES,
        max_average_bitrate: int | None = None,
        output: str | None = None,
    ) -> None:
        self._client = client
        self._create_params: dict[str, Any] = {
            "configuration": {"iceServers": list(configuration.get("iceServers") or [])},
            "codec_preferences": list(codec_preferences),
            "max_average_bitrate": max_average_bitrate,
            "output": output,
        }
        self.pc_id: str | None = None
        self._muted = False
        self._codec: str | None = None
        self._local_sdp: str | None = None
        self._can_insert_dtmf = False
        self._connection_state = "new"
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sink: AudioSink | None = None
        self.on_dtmf: Any = None
        self.on_connection_state_change: Any = None

    # -- properties --------------------------------------------------------------------
    @property
    def muted(self) -> bool:
        """Whether the agent sends silence instead of the input."""
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        changed = bool(value) != self._muted
        self._muted = bool(value)
        if changed and self.pc_id is not None:
            self._background("mute", muted=self._muted)

    @property
    def codec(self) -> str | None:
        """The codec the agent negotiated."""
        return self._codec

    @property
    def local_sdp(self) -> str | None:
        """The agent's last local description."""
        return self._local_sdp

    @property
    def can_insert_dtmf(self) -> bool:
        """Whether the agent negotiated RFC 4733 DTMF."""
        return self._can_insert_dtmf

    @property
    def connection_state(self) -> str:
        """The agent's last reported connection state."""
        return self._connection_state

    @property
    def source(self) -> AudioSource | None:
        """Always None: the input lives in the agent."""
        return None

    def set_remote_sink(self, sink: AudioSink | None) -> None:
        """Kept for API parity: remote audio plays on the agent's output device."""
        self._sink = sink

    def set_local_tap(self, tap: Callable[[Pcm], None] | None) -> None:
        """Nothing to meter here: the input is captured and sent in the agent process."""

    def replace_source(self, source: AudioSource | None) -> None:
        """Switch the agent to another of its inputs (an :class:`AgentSource`)."""
        device_id = _agent_device_id(source)
        if self.pc_id is not None:
            self._background("replace_source", source=device_id)

    # -- negotiation -------------------------------------------------------------------
    async def _create(self) -> str:
        if self._closed:
            raise RuntimeError("RemotePeerConnection is closed")
        if self.pc_id is None:
            result = await self._client.request(
                "create_pc", **self._create_params, muted=self._muted
            )
            self.pc_id = str(result["pc"])
            self._client.add_listener(self.pc_id, self._on_event)
        return self.pc_id

    def _negotiated(self, result: Mapping[str, Any]) -> None:
        self._codec = result.get("codec")
        self._can_insert_dtmf = bool(result.get("can_insert_dtmf"))

    async def create_offer(self, source: AudioSource | None) -> str:
        """The agent creates and applies an offer sending from ``source``'s device."""
        device_id = _agent_device_id(source)
        pc = await self._create()
        result = await self._client.request("create_offer", pc=pc, source=device_id)
        self._local_sdp = str(result["sdp"])
        return self._local_sdp

    async def apply_answer(self, sdp: str) -> None:
        """The agent applies the remote answer; media starts there."""
        pc = await self._create()
        self._negotiated(await self._client.request("apply_answer", pc=pc, sdp=sdp))

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        """The agent answers ``offer_sdp`` sending from ``source``'s device."""
        device_id = _agent_device_id(source)
        pc = await self._create()
        result = await self._client.request("create_answer", pc=pc, sdp=offer_sdp, source=device_id)
        self._negotiated(result)
        self._local_sdp = str(result["sdp"])
        return self._local_sdp

    async def insert_dtmf(self, tones: str, duration_ms: int = 160, gap_ms: int = 70) -> None:
        """RFC 4733 DTMF sent by the agent."""
        if not self._can_insert_dtmf or self.pc_id is None:
            raise RuntimeError("telephone-event was not negotiated")
        await self._client.request(
            "insert_dtmf", pc=self.pc_id, tones=tones, duration_ms=duration_ms, gap_ms=gap_ms
        )

    async def get_stats(self) -> dict[str, Any]:
        """The agent-side peer connection's stats (``PeerConnection.get_stats`` keys)."""
        if self.pc_id is None or self._closed:
            return {}
        stats: dict[str, Any] = await self._client.request("get_stats", pc=self.pc_id)
        return stats

    async def close(self) -> None:
        """Close the agent-side peer connection and its devices (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        pc, self.pc_id = self.pc_id, None
        if pc is None:
            return
        self._client.remove_listener(pc)
        try:
            await self._client.request("close", pc=pc)
        except (ConnectionError, RuntimeError) as exc:
            log.info("closing agent peer connection %s: %s", pc, exc)

    # -- events and background requests ------------------------------------------------
    def _on_event(self, event: str, params: Mapping[str, Any]) -> None:
        if event == "dtmf" and self.on_dtmf is not None:
            self.on_dtmf(str(params.get("digit")))
        elif event == "connectionstatechange":
            self._connection_state = str(params.get("state"))
            if self.on_connection_state_change is not None:
                self.on_connection_state_change(self._connection_state)
        elif event == "disconnected":
            self._connection_state = "failed"
            log.warning("media agent connection lost: call media is gone")
            if self.on_connection_state_change is not None:
                self.on_connection_state_change("failed")

    def _background(self, method: str, **params: Any) -> None:
        async def run() -> None:
            try:
                await self._client.request(method, pc=self.pc_id, **params)
            except (ConnectionError, RuntimeError) as exc:
                log.warning("media agent %s failed: %s", method, exc)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class MediaAgentPlugin:
    """Route a Device's media through the media agent at ``url``.

    ``secret``: the agent's shared secret. ``output``: the agent output device
    for call audio (default: the agent's default output).
    """

    def __init__(self, url: str, *, secret: str | None = None, output: str | None = None) -> None:
        self.client = AgentClient(url, secret)
        self.output = output
        self.devices: list[MediaDeviceInfo] = []

    @hookimpl
    async def softphone_enumerate_devices(self) -> list[MediaDeviceInfo]:
        """The agent's devices (``agent:`` + its id); the last list if it is unreachable."""
        try:
            found = await self.client.request("enumerate_devices")
        except (ConnectionError, RuntimeError) as exc:
            log.warning("cannot list the media agent's devices: %s", exc)
            return self.devices
        self.devices = [
            MediaDeviceInfo(
                AGENT_PREFIX + info.device_id,
                info.kind,
                f"{info.label} (agent)" if info.label else "",
                AGENT_PREFIX + info.group_id,
            )
            for info in (MediaDeviceInfo.from_json(d) for d in found)
        ]
        return self.devices

    @hookimpl
    def softphone_get_user_media(self, device_id: str | None) -> AgentSource | None:
        """The agent's default input, or the ``agent:`` device asked for."""
        if device_id in (None, "default"):
            return AgentSource(None)
        if device_id and device_id.startswith(AGENT_PREFIX):
            return AgentSource(device_id[len(AGENT_PREFIX) :])
        return None

    @hookimpl
    def softphone_create_peer_connection(
        self, configuration: Mapping[str, Any], options: Any
    ) -> RemotePeerConnection:
        """A peer connection in the agent."""
        return RemotePeerConnection(
            self.client,
            configuration,
            codec_preferences=getattr(options, "codec_preferences", DEFAULT_CODEC_PREFERENCES),
            max_average_bitrate=getattr(options, "max_average_bitrate", None),
            output=self.output,
        )

    @hookimpl
    async def softphone_close(self) -> None:
        """Hang up on the agent (it closes this app's media)."""
        await self.client.close()
