"""Issue 5, media side: a dead media path is detected and healed by ICE restart.

Alice's media reaches the gateway through UDP relays (``benchmarks.udp_relay``,
switched together by tests/faults.py ``NatSwitch``) that can blackhole every
datagram. Her peer connection is a plugin override (the JS ``RTCPeerConnection``
option) that points the gateway's candidates at relays, the way a NAT on the path
would look to her.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from faults import NatSwitch
from recorders import EventLog

from softphone.audio_backends import MemorySink, ToneSource
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.media.peer_connection import PeerConnection

ALICE_HZ, BOB_HZ = 1000.0, 1500.0
DeviceFactory = Callable[..., Device]
CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host.*)$", re.MULTILINE
)


class NattedPeerConnection(PeerConnection):
    """Our PeerConnection, reachable only through the relays of ``switch``: the SDP
    candidates it sends and receives are rewritten to relay ports, both ways."""

    def __init__(self, switch: NatSwitch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.switch = switch

    def _through_nat(self, sdp: str) -> str:
        out, last = [], 0
        for match in CANDIDATE.finditer(sdp):
            relay = self.switch.relay(int(match.group(2)))
            out.append(
                sdp[last : match.start()] + match.group(1) + str(relay.port_for_a) + match.group(3)
            )
            last = match.end()
        return "".join(out) + sdp[last:]

    async def create_offer(self, source: Any) -> str:
        return self._through_nat(await super().create_offer(source))

    async def create_answer(self, offer_sdp: str, source: Any) -> str:
        answer = await super().create_answer(self._through_nat(offer_sdp), source)
        return self._through_nat(answer)

    async def restart_ice_offer(self) -> str:
        return self._through_nat(await super().restart_ice_offer())

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(self._through_nat(sdp))

    async def apply_ice_restart_answer(self, sdp: str) -> None:
        await super().apply_ice_restart_answer(self._through_nat(sdp))


@pytest.fixture
async def switch() -> AsyncIterator[NatSwitch]:
    nat = NatSwitch()
    yield nat
    nat.close()


async def _call_through_nat(
    make_device: DeviceFactory, switch: NatSwitch, natted_side: str = "alice"
) -> tuple[Call, Call, MemorySink, MemorySink]:
    def natted(config: Mapping[str, Any]) -> PeerConnection:
        return NattedPeerConnection(switch, ice_servers=list(config.get("iceServers") or []))

    alice_opts: dict[str, Any] = {"rtc_peer_connection": natted} if natted_side == "alice" else {}
    bob_opts: dict[str, Any] = {"rtc_peer_connection": natted} if natted_side == "bob" else {}
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]), **alice_opts)
    bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]), **bob_opts)
    bob_calls: list[Call] = []
    bob_heard, alice_heard = MemorySink(), MemorySink()

    def on_incoming(call: Call) -> None:
        bob_calls.append(call)
        call.on("accept", lambda c: c.get_remote_stream().add_sink(bob_heard))
        call.accept()

    bob.on("incoming", on_incoming)
    await bob.register()
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    call.get_remote_stream().add_sink(alice_heard)
    assert switch.relays, "the override did not put a relay on the path"
    return call, bob_calls[0], alice_heard, bob_heard


async def _hears(sink: MemorySink, hz: float, after: int) -> None:
    from recorders import eventually

    from softphone.audio_backends.analysis import detect_tone
    from softphone.audio_backends.base import SAMPLE_RATE

    def fresh() -> bool:
        new = sink.pcm()[after:]
        return len(new) > SAMPLE_RATE // 2 and detect_tone(new[-SAMPLE_RATE // 2 :], hz)

    await eventually(fresh, timeout=15)


async def test_blackholed_media_is_restored_by_ice_restart(
    make_device: DeviceFactory, switch: NatSwitch
) -> None:
    call, bob_call, alice_heard, bob_heard = await _call_through_nat(make_device, switch)
    await _hears(bob_heard, ALICE_HZ, 0)
    log = EventLog(
        call, "reconnecting", "reconnected", "warning", "warning-cleared", "disconnect", "error"
    )
    bob_log = EventLog(bob_call, "reconnecting", "disconnect")
    switch.blackholed = True
    (error,) = await log.wait_for("reconnecting", timeout=10)
    assert error.code == 53405
    assert call.status() == "reconnecting"
    assert log.args("warning")[0][0] == "ice-connectivity-lost"
    switch.blackholed = False  # the network comes back; the next restart gets through
    await log.wait_for("reconnected", timeout=20)
    assert call.status() == "open" and call.ice_restarts >= 1
    assert log.args("warning-cleared") == [("ice-connectivity-lost",)]
    marks = len(alice_heard.pcm()), len(bob_heard.pcm())
    await _hears(bob_heard, ALICE_HZ, marks[1])
    await _hears(alice_heard, BOB_HZ, marks[0])
    assert log.count("disconnect") == 0 and log.count("error") == 0
    assert bob_call.status() == "open" and bob_log.names() == []  # bob never noticed
    call.disconnect()


async def test_media_that_never_returns_ends_the_call(
    make_device: DeviceFactory, switch: NatSwitch, monkeypatch: pytest.MonkeyPatch
) -> None:
    import softphone.core.call as call_module

    monkeypatch.setattr(call_module, "MEDIA_GIVE_UP_S", 4.0)  # JS: 30 s; same logic
    call, bob_call, _, bob_heard = await _call_through_nat(make_device, switch)
    await _hears(bob_heard, ALICE_HZ, 0)
    log = EventLog(call, "reconnecting", "reconnected", "disconnect", "error")
    bob_log = EventLog(bob_call, "disconnect")
    switch.blackholed = True
    await log.wait_for("reconnecting", timeout=10)
    await log.wait_for("error", timeout=20)
    assert log.names()[-2:] == ["disconnect", "error"]  # hang up first, then the error
    (error,) = log.args("error")[0]
    assert error.code == 53405 and error.original_error["code"] == 31003
    assert call.status() == "closed" and log.count("reconnected") == 0
    await bob_log.wait_for("disconnect", timeout=5)


async def test_the_callee_side_restarts_too(make_device: DeviceFactory, switch: NatSwitch) -> None:
    """A restart initiated by the callee leg: the gateway answers it the same way."""
    call, bob_call, alice_heard, bob_heard = await _call_through_nat(make_device, switch, "bob")
    await _hears(alice_heard, BOB_HZ, 0)
    bob_log = EventLog(bob_call, "reconnecting", "reconnected", "disconnect")
    alice_log = EventLog(call, "reconnecting", "disconnect")
    switch.blackholed = True
    await bob_log.wait_for("reconnecting", timeout=10)
    switch.blackholed = False
    await bob_log.wait_for("reconnected", timeout=20)
    await _hears(alice_heard, BOB_HZ, len(alice_heard.pcm()))
    await _hears(bob_heard, ALICE_HZ, len(bob_heard.pcm()))
    assert bob_call.ice_restarts >= 1 and alice_log.names() == []
    call.disconnect()
