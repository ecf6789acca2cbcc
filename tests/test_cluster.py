"""Two gateways sharing a real redis-server: calls between devices on different gateways.

alice is a Device of gateway A, bob one of gateway B; A rings bob through Redis, each
gateway terminates its own device's leg and the two are joined by a gateway-to-gateway
media leg (RTP forwarded, not transcoded). Real aiortc media, real audio.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from calltools import Listener, recent
from clustertools import DeviceOn, RedisServer, cluster, device_on, redis_server
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_APPLICATION_SID,
    AccountStore,
    Application,
)
from softphone.gateway.app.app_call import AppSettings
from softphone.gateway.cluster.remote_client import RemoteClient
from softphone.gateway.server import Gateway, GatewayConfig

__all__ = ["cluster", "device_on", "redis_server"]  # fixtures, used by name

ALICE_HZ = 1000.0
BOB_HZ = 1500.0
Cluster = tuple[Gateway, Gateway]


def _near(pcm: object, hz: float) -> bool:
    return abs(dominant_frequency(pcm) - hz) < 30  # type: ignore[arg-type]


async def _bob_on_b(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer, *, accept: bool = True
) -> Listener:
    """bob registered on gateway B, and A able to see it."""
    _, gw_b = cluster
    bob = Listener(device_on(gw_b, "bob", file_input_stream=ToneSource([BOB_HZ])), accept=accept)
    await bob.device.register()
    ((account_sid, _),) = gw_b.presence.addresses()
    await redis_server.wait_presence(account_sid, "bob", "gw-b")
    return bob


async def _alice_calls_bob(
    cluster: Cluster, device_on: DeviceOn, bob: Listener, **params: str
) -> tuple[Device, Call]:
    gw_a, _ = cluster
    alice = device_on(gw_a, "alice", file_input_stream=ToneSource([ALICE_HZ]))
    call = await alice.connect(params={"To": "client:bob", **params})
    return alice, call


async def _answered(call: Call, bob: Listener) -> tuple[Call, MemorySink]:
    """bob's call once both are open, and what alice hears from now on."""
    await eventually(lambda: call.status() == "open", timeout=15)
    heard_by_alice = MemorySink()
    call.get_remote_stream().add_sink(heard_by_alice)
    bob_call = await bob.wait_call()
    await eventually(lambda: bob_call.status() == "open")
    return bob_call, heard_by_alice


async def test_cross_gateway_call_carries_audio_both_ways(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server)
    started = time.monotonic()
    alice, call = await _alice_calls_bob(cluster, device_on, bob, greeting="hi there")
    log = EventLog(call, "ringing", "accept", "disconnect", "error")
    await log.wait_for("accept", timeout=15)
    setup_s = time.monotonic() - started
    bob_call, heard_by_alice = await _answered(call, bob)
    assert log.names() == ["ringing", "accept"]
    assert bob_call.parameters["From"] == "client:alice"
    assert bob_call.parameters["To"] == "client:bob"
    assert bob_call.custom_parameters == {"greeting": "hi there"}
    # the callee's CallSid is the one gateway A chose for the dialled leg
    (a_call,) = gw_a.calls.calls
    assert bob_call.parameters["CallSid"] == a_call.child_sid

    bob_hears = await recent(bob.heard, 0.6)
    alice_hears = await recent(heard_by_alice, 0.6)
    assert _near(bob_hears, ALICE_HZ), dominant_frequency(bob_hears)
    assert _near(alice_hears, BOB_HZ), dominant_frequency(alice_hears)

    # each gateway bridges its device's leg to the gateway-to-gateway leg: RTP forwarded
    (b_call,) = gw_b.calls.calls
    for bridged in (a_call, b_call):
        assert bridged.bridge is not None and bridged.bridge.mode == "forward"
        assert all(d.forwarded > 0 and d.transcoded_in == 0 for d in bridged.bridge.stats())
    logging.getLogger(__name__).info("cross-gateway call setup: %.3f s", setup_s)

    bob_log = EventLog(bob_call, "disconnect")
    call.disconnect()
    await bob_log.wait_for("disconnect")
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    assert gw_a.calls.records[-1]["answered"] and gw_b.calls.records[-1]["answered"]
    assert not alice.is_busy and not bob.device.is_busy
    assert log.count("error") == 0


async def test_callee_on_the_other_gateway_hangs_up(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server)
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    log = EventLog(call, "accept", "disconnect", "error")
    bob_call, _ = await _answered(call, bob)
    bob_call.disconnect()
    await log.wait_for("disconnect")
    assert log.count("error") == 0 and call.status() == "closed"
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    assert gw_a.calls.records[-1]["reason"] == "hangup by callee"


async def test_caller_cancels_while_the_other_gateway_rings(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server, accept=False)
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    await call.wait_for("ringing", timeout=15)
    bob_call = await bob.wait_call()
    bob_log = EventLog(bob_call, "cancel")
    call.disconnect()
    await bob_log.wait_for("cancel")
    assert bob_call.status() == "closed"
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    assert not gw_b.calls.records[-1]["answered"]


@pytest.mark.parametrize("precise", [False, True], ids=["generic", "precise"])
async def test_reject_on_the_other_gateway(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer, precise: bool
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server, accept=False)
    alice = device_on(gw_a, "alice", enable_improved_signaling_error_precision=precise)
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "error", "disconnect")
    (await bob.wait_call()).reject()
    (error,) = await log.wait_for("error")
    await log.wait_for("disconnect")
    assert error.code == (31603 if precise else 31005)
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    assert gw_a.calls.records[-1]["reason"] == "rejected"


async def test_digits_cross_the_gateways_both_ways(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server)
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    bob_call, _ = await _answered(call, bob)
    bob_got, alice_got = EventLog(bob_call, "dtmf"), EventLog(call, "dtmf")
    call.send_digits("12#")
    await bob_got.wait_for("dtmf", count=3, timeout=10)
    bob_call.send_digits("9*")
    await alice_got.wait_for("dtmf", count=2, timeout=10)
    assert "".join(a[0] for a in bob_got.args("dtmf")) == "12#"
    assert "".join(a[0] for a in alice_got.args("dtmf")) == "9*"
    call.disconnect()
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    assert gw_a.calls.records[-1]["digits"] == "12#9*"
    assert gw_b.calls.records[-1]["digits"] == "12#9*"


async def test_user_messages_cross_the_gateways_both_ways(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    bob = await _bob_on_b(cluster, device_on, redis_server)
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    bob_call, _ = await _answered(call, bob)
    alice_log = EventLog(call, "messageSent", "messageReceived", "error")
    bob_log = EventLog(bob_call, "messageSent", "messageReceived", "error")
    sid = call.send_message({"content": {"hello": "bob"}, "message_type": "user-defined-message"})
    (got,) = await bob_log.wait_for("messageReceived")
    assert got["content"] == {"hello": "bob"} and got["voiceEventSid"] == sid
    await alice_log.wait_for("messageSent")
    reply = bob_call.send_message({"content": "hi alice", "message_type": "user-defined-message"})
    (back,) = await alice_log.wait_for("messageReceived")
    assert back["content"] == "hi alice" and back["voiceEventSid"] == reply
    await bob_log.wait_for("messageSent")
    assert alice_log.count("error") == 0 and bob_log.count("error") == 0
    call.disconnect()


async def test_presence_follows_registration(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    _, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server)
    ((account_sid, _),) = gw_b.presence.addresses()
    await bob.device.unregister()
    await redis_server.wait_presence(account_sid, "bob", "gw-b", present=False)
    alice = device_on(cluster[0], "alice")
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "error", "disconnect")
    (error,) = await log.wait_for("error")
    assert error.code == 31005 and bob.calls == []


async def test_redis_restarted_mid_call(
    cluster: Cluster,
    device_on: DeviceOn,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw_a, gw_b = cluster
    caplog.set_level(logging.INFO, logger="softphone.gateway.cluster")
    bob = await _bob_on_b(cluster, device_on, redis_server)
    ((account_sid, _),) = gw_b.presence.addresses()
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    log = EventLog(call, "disconnect", "error")
    bob_call, heard_by_alice = await _answered(call, bob)
    assert _near(await recent(bob.heard, 0.6), ALICE_HZ)

    await redis_server.stop()
    await eventually(lambda: "unreachable" in caplog.text, timeout=10)
    # Redis is down: the call goes on, audio both ways
    assert _near(await recent(bob.heard, 0.6), ALICE_HZ)
    assert _near(await recent(heard_by_alice, 0.6), BOB_HZ)
    assert call.status() == "open" and bob_call.status() == "open"

    await redis_server.start()  # empty: no persistence
    await eventually(lambda: caplog.text.count("presence re-published") >= 2, timeout=15)
    await redis_server.wait_presence(account_sid, "bob", "gw-b")
    assert gw_a.cluster is not None and gw_a.cluster.reconnects == 1
    assert _near(await recent(heard_by_alice, 0.6), BOB_HZ)
    # the link survived: a hangup on B still reaches A
    bob_call.disconnect()
    await log.wait_for("disconnect")
    assert log.count("error") == 0
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    # and new calls find bob again
    _, second = await _alice_calls_bob(cluster, device_on, bob)
    await second.wait_for("accept", timeout=15)
    second.disconnect()


async def test_hangup_while_redis_is_down_arrives_when_it_is_back(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    bob = await _bob_on_b(cluster, device_on, redis_server)
    _, call = await _alice_calls_bob(cluster, device_on, bob)
    bob_call, _ = await _answered(call, bob)
    bob_log = EventLog(bob_call, "disconnect")
    await redis_server.stop()
    await eventually(lambda: gw_a.cluster is not None and not gw_a.cluster.connected.is_set())
    call.disconnect()
    await eventually(lambda: not gw_a.calls.calls)
    await asyncio.sleep(0.5)
    assert bob_call.status() == "open"  # the frame waits for Redis
    await redis_server.start()
    await bob_log.wait_for("disconnect", timeout=15)
    await eventually(lambda: not gw_b.calls.calls)


async def test_gateway_starts_and_works_alone_while_redis_is_unreachable(
    accounts: AccountStore,
    loopback_media: None,
    device_on: DeviceOn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="softphone.gateway.cluster")
    nowhere = RedisServer()  # a free port nobody listens on
    config = GatewayConfig(port=0, redis_url=nowhere.url, gateway_id="gw-alone")
    async with Gateway(accounts, config) as gateway:
        await eventually(lambda: "unreachable" in caplog.text)
        bob = Listener(device_on(gateway, "bob", file_input_stream=ToneSource([BOB_HZ])))
        await bob.device.register()
        alice = device_on(gateway, "alice", file_input_stream=ToneSource([ALICE_HZ]))
        call = await alice.connect(params={"To": "client:bob"})
        await call.wait_for("accept", timeout=15)
        await bob.wait_call()
        assert _near(await recent(bob.heard, 0.6), ALICE_HZ)
        call.disconnect()
    await nowhere.client.aclose()


async def test_rest_call_and_twiml_dial_ring_devices_on_the_other_gateway(
    cluster: Cluster, device_on: DeviceOn, redis_server: RedisServer
) -> None:
    gw_a, gw_b = cluster
    alice = Listener(device_on(gw_b, "alice", file_input_stream=ToneSource([ALICE_HZ])))
    bob = Listener(device_on(gw_b, "bob", file_input_stream=ToneSource([BOB_HZ])))
    for listener in (alice, bob):
        await listener.device.register()
    for name in ("alice", "bob"):
        await redis_server.wait_presence(DEV_ACCOUNT_SID, name, "gw-b")
    # gateway A places a REST call to alice whose TwiML dials bob: both live on B
    settings = AppSettings(
        account_sid=DEV_ACCOUNT_SID, auth_token="", application=Application(DEV_APPLICATION_SID)
    )
    twiml = "<Response><Dial><Client>bob</Client></Dial></Response>"
    placed = await gw_a.calls.create_call(
        DEV_ACCOUNT_SID, to="client:alice", from_="+15550100", settings=settings, twiml=twiml
    )
    alice_call = await alice.wait_call()
    assert alice_call.parameters["From"] == "+15550100"
    bob_call = await bob.wait_call()
    await eventually(lambda: bob_call.status() == "open" and alice_call.status() == "open")
    assert bob_call.parameters["CallSid"] == placed.child_sid
    assert _near(await recent(bob.heard, 0.6), ALICE_HZ)
    assert _near(await recent(alice.heard, 0.6), BOB_HZ)
    # on A, both legs are links to B
    assert isinstance(placed.caller.conn, RemoteClient)
    assert placed.connected is not None and isinstance(placed.connected.conn, RemoteClient)

    bob_log = EventLog(bob_call, "disconnect")
    alice_call.disconnect()
    await bob_log.wait_for("disconnect", timeout=10)
    await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
