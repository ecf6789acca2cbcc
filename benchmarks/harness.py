"""The pieces every benchmark uses: a gateway process, devices, a lossy relay.

* :class:`GatewayProcess` runs :mod:`benchmarks.gateway_runner` in its own
  process and follows its JSON reports (CPU seconds, loop lag, packets).
* :func:`device_pair` makes a caller and a registered, auto-answering callee
  Device pointed at it; the callee records what it hears.
* :class:`RelayedPeerConnection` puts a :class:`~benchmarks.udp_relay.UdpRelay`
  between a device and the gateway (by rewriting the SDP candidates), so its
  media can be dropped or delayed on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.udp_relay import UdpRelay
from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.tokens import mint_token
from softphone.media.peer_connection import PeerConnection

Path = str  # "ours" or "aiortc"


async def stop_child(
    proc: asyncio.subprocess.Process | None, reader: asyncio.Future[Any] | None, *, timeout: float
) -> None:
    """End a child that stops when its stdin closes (killed after ``timeout`` s), and its reader."""
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class GatewayProcess:
    """A gateway in a child process (``--path ours`` or ``aiortc``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = ""
        self.reports: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_report = asyncio.Event()

    async def __aenter__(self) -> GatewayProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.gateway_runner",
            "--path",
            self.path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        self.url = json.loads(line)["url"]
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_child(self._proc, self._reader, timeout=10)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            if line.startswith(b"{"):  # skip stray prints of the code under test
                self.reports.append(json.loads(line))
            self._new_report.set()

    async def next_report(self) -> dict[str, Any]:
        """Wait for the gateway's next report (every 0.5 s)."""
        count = len(self.reports)
        while len(self.reports) <= count:
            self._new_report.clear()
            await asyncio.wait_for(self._new_report.wait(), 10)
        return self.reports[-1]


def token(identity: str) -> str:
    """A dev-account access token for ``identity``."""
    key = AccountStore.dev().default_key()
    return mint_token(key, identity, ttl=3600, outgoing_application_sid=DEV_APPLICATION_SID)


PeerConnectionFactory = Callable[[Mapping[str, Any]], PeerConnection]


def make_device(
    url: str,
    identity: str,
    *,
    codec: str,
    source: AudioSource | None = None,
    pc_factory: PeerConnectionFactory | None = None,
) -> Device:
    """A Device on the benchmark gateway preferring ``codec`` (``opus`` or ``pcmu``)."""
    other = "pcmu" if codec == "opus" else "opus"
    options: dict[str, Any] = {
        "chunderw": url,
        "codec_preferences": [codec, other],
        "sounds": {},
    }
    if source is not None:
        options["file_input_stream"] = source
    if pc_factory is not None:
        options["rtc_peer_connection"] = pc_factory
    device = Device(token(identity), options)
    assert device.audio is not None
    for name in ("incoming", "outgoing", "disconnect"):
        getattr(device.audio, name)(False)
    return device


@dataclass
class Callee:
    """A registered device that answers every call and feeds what it hears to ``sink``."""

    device: Device
    sink: AudioSink | None = None
    calls: list[Call] = field(default_factory=list)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.device.on("incoming", self._on_incoming)

    def _on_incoming(self, call: Call) -> None:
        self.calls.append(call)
        sink = self.sink

        def on_accept(accepted: Call) -> None:
            if sink is not None:
                accepted.get_remote_stream().add_sink(sink)
            self.accepted.set()

        call.on("accept", on_accept)
        call.accept()


class RelayedPeerConnection(PeerConnection):
    """A device's peer connection whose media runs through ``relay`` (device = side A)."""

    def __init__(self, relay: UdpRelay, **options: Any) -> None:
        super().__init__(**options)
        self.relay = relay

    async def create_offer(self, source: AudioSource | None) -> str:
        return self.relay.from_a(await super().create_offer(source))

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(self.relay.from_b(sdp))

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        answer = await super().create_answer(self.relay.from_b(offer_sdp), source)
        return self.relay.from_a(answer)


def relayed_factory(relay: UdpRelay, *, codec: str, receive_path: str) -> PeerConnectionFactory:
    """A ``rtc_peer_connection`` option value: device media through ``relay``."""
    other = "pcmu" if codec == "opus" else "opus"

    def factory(configuration: Mapping[str, Any]) -> PeerConnection:
        return RelayedPeerConnection(
            relay,
            ice_servers=list(configuration.get("iceServers") or []),
            codec_preferences=(codec, other),
            receive_path=receive_path,  # type: ignore[arg-type]
        )

    return factory


def plain_factory(*, codec: str, receive_path: str) -> PeerConnectionFactory:
    """A ``rtc_peer_connection`` option value: our PeerConnection on ``receive_path``."""
    other = "pcmu" if codec == "opus" else "opus"

    def factory(configuration: Mapping[str, Any]) -> PeerConnection:
        return PeerConnection(
            ice_servers=list(configuration.get("iceServers") or []),
            codec_preferences=(codec, other),
            receive_path=receive_path,  # type: ignore[arg-type]
        )

    return factory


def device_receive_path(path: Path) -> str:
    """The device receive path that goes with a benchmark path."""
    return "softphone" if path == "ours" else "aiortc"
