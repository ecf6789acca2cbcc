"""The ``turn`` section: call setup and ICE-restart recovery through a real coturn.

A gateway process (:class:`benchmarks.harness.GatewayProcess`), coturn on a
loopback address of its own (``tests/fixtures_turn.py``: ``turnserver`` from
apt), and two Devices in this process: the caller ``alice`` behind TURN, the
callee ``bob`` on the open network.

* **setup**: ``connect()`` to the caller's ``accept`` and to the first audio
  the caller hears (the relay path carries it), for: no ICE servers; a
  reachable TURN server, relay-only, over UDP, TCP and TLS; an unreachable
  TURN server (nothing answers on its UDP port) with policy ``all``. Each with
  the gathering bound (:data:`~softphone.media.ice_gathering.ICE_GATHERING_TIMEOUT_S`)
  and without it (aioice's own 5 s: how the SDK behaved before).
* **restart**: a relay-only call through coturn, then coturn is killed and
  restarted on the same ports (every allocation lost): seconds until the
  Call notices (``reconnecting``), until the ICE restart brings media back
  (``reconnected``) and until the caller hears audio again; plus one ICE
  restart over a live TURN path, offer to swapped path, at the PeerConnection
  level.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Callee, GatewayProcess, PeerConnectionFactory, make_device
from softphone.audio_backends import ToneSource
from softphone.audio_backends.base import Pcm
from softphone.core.call import Call
from softphone.media.ice_gathering import ICE_GATHERING_TIMEOUT_S
from softphone.media.peer_connection import PeerConnection
from tests.fixtures_turn import Coturn, Transport

__all__ = ["RecoveryResult", "SetupResult", "run"]


@dataclass
class SetupResult:
    """Setup figures of one scenario, in seconds (median, min, max over the calls)."""

    scenario: str
    bound: str
    accept: list[float]
    first_audio: list[float]


@dataclass
class RecoveryResult:
    """One coturn restart during a relay-only call, in seconds from the kill."""

    transport: str
    reconnecting: float
    reconnected: float
    audio_back: float


class FirstAudio:
    """An AudioSink that remembers when the first remote audio arrived."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.samples = 0

    def write(self, pcm: Pcm) -> None:
        self.samples += len(pcm)
        if self.samples >= 960:  # a whole 20 ms frame, not a stray sample
            self.arrived.set()

    def close(self) -> None:
        pass


def _listen(call: Call, sink: FirstAudio) -> None:
    remote = call.get_remote_stream()
    assert remote is not None
    remote.add_sink(sink)


def _unanswered_turn_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"turn:127.0.0.1:{s.getsockname()[1]}"


def _factory(timeout: float | None, tls: ssl.SSLContext | None) -> PeerConnectionFactory:
    """An ``rtc_peer_connection`` option: our PeerConnection with this gathering bound."""

    def factory(configuration: Mapping[str, Any]) -> PeerConnection:
        return PeerConnection(
            ice_servers=configuration.get("iceServers"),
            ice_transport_policy=configuration.get("iceTransportPolicy") or "all",
            ice_gathering_timeout=timeout,
            turn_tls_context=tls,
        )

    return factory


async def _setup(
    gateway: GatewayProcess,
    callee: Callee,
    config: dict[str, Any],
    factory: PeerConnectionFactory,
    count: int,
) -> tuple[list[float], list[float]]:
    loop = asyncio.get_running_loop()
    caller = make_device(
        gateway.url, "alice", codec="opus", source=ToneSource([1000.0]), pc_factory=factory
    )
    accept: list[float] = []
    audio: list[float] = []
    try:
        for _ in range(count):
            first = FirstAudio()
            start = loop.time()
            call = await caller.connect(params={"To": "client:bob"}, rtc_configuration=config)
            await call.wait_for("accept", timeout=20)
            accept.append(loop.time() - start)
            _listen(call, first)
            await asyncio.wait_for(first.arrived.wait(), 20)
            audio.append(loop.time() - start)
            call.disconnect()
            while caller.is_busy or callee.device.is_busy:
                await asyncio.sleep(0.01)
    finally:
        await caller.destroy()
    return accept, audio


async def _recovery(
    gateway: GatewayProcess, coturn: Coturn, transport: Transport
) -> RecoveryResult:
    loop = asyncio.get_running_loop()
    caller = make_device(gateway.url, "alice", codec="opus", source=ToneSource([1000.0]))
    config = {"iceServers": [coturn.ice_server(transport)], "iceTransportPolicy": "relay"}
    try:
        call: Call = await caller.connect(params={"To": "client:bob"}, rtc_configuration=config)
        await call.wait_for("accept", timeout=20)
        first = FirstAudio()
        _listen(call, first)
        await asyncio.wait_for(first.arrived.wait(), 20)
        await asyncio.sleep(1.0)
        reconnecting, reconnected = asyncio.Event(), asyncio.Event()
        call.on("reconnecting", lambda *_: reconnecting.set())
        call.on("reconnected", lambda *_: reconnected.set())
        start = loop.time()
        await coturn.restart()
        await asyncio.wait_for(reconnecting.wait(), 30)
        t_reconnecting = loop.time() - start
        await asyncio.wait_for(reconnected.wait(), 60)
        t_reconnected = loop.time() - start
        again = FirstAudio()
        _listen(call, again)
        await asyncio.wait_for(again.arrived.wait(), 20)
        t_audio = loop.time() - start
        call.disconnect()
    finally:
        await caller.destroy()
    return RecoveryResult(transport, t_reconnecting, t_reconnected, t_audio)


async def _pc_restart(coturn: Coturn, count: int) -> list[float]:
    """Seconds from ``restart_ice_offer`` to the new path swapped in, over live TURN/UDP."""
    loop = asyncio.get_running_loop()
    a = PeerConnection(ice_servers=[coturn.ice_server("udp")], ice_transport_policy="relay")
    b = PeerConnection(ice_servers=[])
    times: list[float] = []
    try:
        offer = await a.create_offer(ToneSource([1000.0]))
        await a.apply_answer(await b.create_answer(offer, ToneSource([1500.0])))
        while a.connection_state != "connected":
            await asyncio.sleep(0.01)
        for _ in range(count):
            start = loop.time()
            offer = await a.restart_ice_offer()
            await a.apply_ice_restart_answer(await b.answer_ice_restart(offer))
            times.append(loop.time() - start)
            await asyncio.sleep(0.3)
    finally:
        await a.close()
        await b.close()
    return times


async def run(quick: bool) -> tuple[list[SetupResult], list[RecoveryResult], list[float]]:
    """Every figure of the section (fewer calls with ``quick``)."""
    count = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="softphone-turn-") as workdir:
        coturn = await Coturn(Path(workdir)).start()
        tls = coturn.client_ssl_context()
        try:
            async with GatewayProcess("ours") as gateway:
                callee = Callee(
                    make_device(gateway.url, "bob", codec="opus", source=ToneSource([1500.0]))
                )
                await callee.device.register()
                unreachable = {
                    "iceServers": [
                        {"urls": _unanswered_turn_url(), "username": "u", "credential": "p"}
                    ]
                }
                transports: tuple[Transport, ...] = ("udp", "tcp", "tls")
                scenarios: list[tuple[str, dict[str, Any]]] = [
                    ("no ICE servers", {"iceServers": []}),
                    *(
                        (
                            f"TURN/{t}, relay-only",
                            {"iceServers": [coturn.ice_server(t)], "iceTransportPolicy": "relay"},
                        )
                        for t in transports
                    ),
                    ("TURN unreachable, all", unreachable),
                ]
                setups: list[SetupResult] = []
                for name, config in scenarios:
                    for timeout in (None, ICE_GATHERING_TIMEOUT_S):
                        bound = "aioice 5 s" if timeout is None else f"{timeout:.1f} s"
                        factory = _factory(timeout, tls)
                        accept, audio = await _setup(gateway, callee, config, factory, count)
                        setups.append(SetupResult(name, bound, accept, audio))
                recoveries = [
                    await _recovery(gateway, coturn, t) for t in transports[: 1 if quick else 2]
                ]
                await callee.device.destroy()
            restarts = await _pc_restart(coturn, 3 if quick else 10)
        finally:
            coturn.stop()
    return setups, recoveries, restarts
