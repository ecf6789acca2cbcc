"""A peer connection reporting ICE ``failed`` mid-call starts a media reconnection (53405)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from recorders import EventLog

from softphone.audio_backends import ToneSource
from softphone.core.device import Device
from softphone.media.peer_connection import PeerConnection

DeviceFactory = Callable[..., Device]


async def test_ice_failed_reconnects_and_connected_restores(make_device: DeviceFactory) -> None:
    created: list[PeerConnection] = []

    def peer_connection(config: Mapping[str, Any]) -> PeerConnection:
        pc = PeerConnection(ice_servers=list(config.get("iceServers") or []))
        created.append(pc)
        return pc

    alice = make_device(
        "alice", file_input_stream=ToneSource([440.0]), rtc_peer_connection=peer_connection
    )
    call = await alice.connect(params={"To": "echo"})
    log = EventLog(call, "accept", "reconnecting", "reconnected", "disconnect")
    await log.wait_for("accept", timeout=15)
    pc = created[0]
    assert pc.on_connection_state_change is not None

    pc.on_connection_state_change("failed")  # what aiortc reports when consent fails
    (error,) = await log.wait_for("reconnecting")
    assert error.code == 53405 and call.status() == "reconnecting"
    pc.on_connection_state_change("failed")  # the same reconnection: no second event
    pc.on_connection_state_change("connected")
    await log.wait_for("reconnected")
    assert call.status() == "open" and log.count("reconnecting") == 1
    assert log.count("disconnect") == 0
    call.disconnect()
