"""Reconnect tokens work on every gateway of a cluster.

alice reaches the gateways through one address in front of them
(:class:`~clustertools.FailoverProxy`: what a load balancer, a DNS name shared by the
edges, or ``--workers`` on one port gives the JS SDK's signaling reconnection); bob is
registered on gateway B. Two cases:

* gateway A dies mid-call (it runs as its own process, killed with SIGKILL: its
  sockets, media and Redis subscription die with it). alice reconnects to B, which
  holds bob's side of the call and takes her leg over; her SDK then offers media anew
  and both hear each other again;
* alice's socket drops and her reconnect lands on B while A is alive: B relays her
  signaling to A, which still holds her leg and media.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import numpy as np
import pytest
from calltools import Listener, recent
from clustertools import TTL_S, FailoverProxy, RedisServer, cluster, redis_server
from recorders import EventLog, eventually
from websockets.asyncio.client import connect

from benchmarks.wire import GatewayChild
from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_ACCOUNT_SID, AccountStore, ApiKey
from softphone.gateway.cluster import directory
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.signaling.messages import Invite, Listen, encode

__all__ = ["cluster", "redis_server"]  # fixtures, used by name

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OTHER_ACCOUNT = "AC" + "0" * 31 + "2"
OTHER_KEY = "SK" + "0" * 31 + "2"
ALICE_HZ = 1000.0
BOB_HZ = 1500.0


def _near(pcm: object, hz: float) -> bool:
    return abs(dominant_frequency(pcm) - hz) < 30  # type: ignore[arg-type]


@pytest.fixture
async def edges(
    accounts: AccountStore, loopback_media: None, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayChild, Gateway, FailoverProxy]]:
    """Gateway A (a process), gateway B (here), and the address in front of both."""
    gw_b = Gateway(
        accounts,
        GatewayConfig(
            port=0,
            heartbeat_interval_s=1.0,
            edge="b",
            redis_url=redis_server.url,
            gateway_id="gw-b",
            cluster_ttl_s=TTL_S,
        ),
    )
    await gw_b.start()
    gw_a = GatewayChild(
        tmp_path / "gw-a.log",
        *("--redis", redis_server.url, "--gateway-id", "gw-a", "--edge", "a"),
        *("--heartbeat-interval", "1", "--log-level", "debug"),
    )
    await gw_a.start()
    proxy = FailoverProxy([gw_a.port, gw_b.port])
    await proxy.start()
    yield gw_a, gw_b, proxy
    await proxy.stop()
    gw_a.stop()
    await gw_b.stop()


DeviceFactory = Callable[..., Device]


@pytest.fixture
async def devices(make_token: Callable[..., str]) -> AsyncIterator[DeviceFactory]:
    made: list[Device] = []

    def factory(identity: str, url: str, hz: float, **options: object) -> Device:
        settings = {"chunderw": url, "file_input_stream": ToneSource([hz]), **options}
        device = Device(make_token(identity), settings)
        made.append(device)
        return device

    yield factory
    for device in made:
        await device.destroy()


@attrs.define
class Scene:
    """alice (through ``url``) in a call with bob (registered on ``gw_b``), both open."""

    bob: Listener
    call: Call
    bob_call: Call
    log: EventLog
    heard_by_alice: MemorySink


async def alice_calls_bob(
    devices: DeviceFactory, redis_server: RedisServer, gw_b: Gateway, url: str, window_ms: int
) -> Scene:
    """bob on B, alice reaching the cluster at ``url`` with that reconnect window."""
    bob = Listener(devices("bob", gw_b.url, BOB_HZ))
    await bob.device.register()
    await redis_server.wait_presence(DEV_ACCOUNT_SID, "bob", "gw-b")
    alice = devices("alice", url, ALICE_HZ, max_call_signaling_timeout_ms=window_ms)
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "reconnecting", "reconnected", "disconnect", "error")
    await eventually(lambda: call.status() == "open", timeout=15)
    heard_by_alice = MemorySink()
    remote = call.get_remote_stream()
    assert remote is not None
    remote.add_sink(heard_by_alice)
    bob_call = await bob.wait_call()
    await eventually(lambda: bob_call.status() == "open")
    return Scene(bob, call, bob_call, log, heard_by_alice)


async def test_edge_killed_mid_call_the_client_reconnects_to_the_other_edge(
    edges: tuple[GatewayChild, Gateway, FailoverProxy],
    devices: DeviceFactory,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw_a, gw_b, proxy = edges
    caplog.set_level(logging.INFO, logger="softphone.gateway")
    scene = await alice_calls_bob(devices, redis_server, gw_b, proxy.url, 30_000)
    bob, call, bob_call, log = scene.bob, scene.call, scene.bob_call, scene.log
    heard_by_alice = scene.heard_by_alice
    assert _near(await recent(bob.heard, 0.6), ALICE_HZ)
    assert _near(await recent(heard_by_alice, 0.6), BOB_HZ)
    # alice's leg is on A, bob's on B: A recorded alice's leg for a take-over
    callsid = call.parameters["CallSid"]
    assert await redis_server.client.exists(directory.leg_key(callsid))

    gw_a.kill()
    await log.wait_for("reconnected", timeout=30)
    assert log.names()[:2] == ["reconnecting", "reconnected"]
    assert "took over its caller leg here" in caplog.text
    assert call.status() == "open" and bob_call.status() == "open"
    (b_call,) = gw_b.calls.calls
    assert b_call.caller.identity == "alice" and b_call.caller.conn is not None
    # the media path died with A: alice's SDK offers anew and B answers it
    await _hears(bob.heard, ALICE_HZ)
    await _hears(heard_by_alice, BOB_HZ)
    # her leg's record now names B (a later reconnect elsewhere is sent here)
    for _ in range(250):
        record = json.loads(await redis_server.client.get(directory.leg_key(callsid)) or "{}")
        if record.get("gateway") == "gw-b":
            break
        await asyncio.sleep(0.02)
    assert record["gateway"] == "gw-b" and record["link"] == ""

    bob_call.disconnect()
    await log.wait_for("disconnect", timeout=10)
    assert log.count("error") == 0
    await eventually(lambda: not gw_b.calls.calls)


async def _hears(sink: MemorySink, hz: float, within_s: float = 20.0) -> None:
    """Wait until fresh audio in ``sink`` is a tone of ``hz`` (not a dead path's silence)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        pcm = (await recent(sink, 0.4)).astype(np.float64)
        if float(np.sqrt(np.mean(pcm**2))) > 300 and _near(pcm, hz):
            return
        assert asyncio.get_running_loop().time() < deadline, f"no {hz:g} Hz tone heard"


async def test_a_dead_edge_whose_client_never_comes_back_ends_the_call_after_its_window(
    edges: tuple[GatewayChild, Gateway, FailoverProxy],
    devices: DeviceFactory,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw_a, gw_b, proxy = edges
    caplog.set_level(logging.INFO, logger="softphone.gateway")
    scene = await alice_calls_bob(devices, redis_server, gw_b, proxy.url, 2_000)
    bob_call = scene.bob_call
    bob_log = EventLog(bob_call, "disconnect", "error")

    proxy.targets = []  # alice can reach no gateway any more
    gw_a.kill()
    await eventually(lambda: "gateway gw-a is gone" in caplog.text, timeout=15)
    assert bob_call.status() == "open"  # held for alice's 2 s window
    assert "caller leg detached; holding it 2 s" in caplog.text
    await bob_log.wait_for("disconnect", timeout=10)
    await eventually(lambda: not gw_b.calls.calls)
    assert "ended: caller did not reconnect in time" in caplog.text


async def test_a_reconnect_landing_on_another_live_gateway_is_relayed_to_the_leg(
    cluster: tuple[Gateway, Gateway],
    devices: DeviceFactory,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw_a, gw_b = cluster
    caplog.set_level(logging.INFO, logger="softphone.gateway")
    proxy = FailoverProxy([gw_a.port])
    await proxy.start()
    try:
        scene = await alice_calls_bob(devices, redis_server, gw_b, proxy.url, 30_000)
        bob, call, bob_call, log = scene.bob, scene.call, scene.bob_call, scene.log
        heard_by_alice = scene.heard_by_alice
        bob_messages = EventLog(bob_call, "messageReceived")

        proxy.targets = [gw_b.port]  # the address now leads to B
        proxy.drop()
        await log.wait_for("reconnected", timeout=30)
        assert "relaying it there" in caplog.text
        (a_call,) = gw_a.calls.calls
        assert a_call.caller.conn.__class__.__name__ == "RelayedClient"
        # media never moved: still alice <-> A <-> B <-> bob
        await _hears(bob.heard, ALICE_HZ)
        await _hears(heard_by_alice, BOB_HZ)
        # alice's frames reach A through B (a user message crosses A's link back to B)
        alice_messages = EventLog(call, "messageSent")
        sid = call.send_message({"content": {"hi": "bob"}, "message_type": "user-defined-message"})
        (received,) = await bob_messages.wait_for("messageReceived", timeout=10)
        assert received["content"] == {"hi": "bob"} and received["voiceEventSid"] == sid
        await alice_messages.wait_for("messageSent", timeout=10)  # A's ack, through B
        # and A's frames reach alice through B
        bob_call.disconnect()
        await log.wait_for("disconnect", timeout=10)
        assert log.count("error") == 0
        await eventually(lambda: not gw_a.calls.calls and not gw_b.calls.calls)
    finally:
        await proxy.stop()


@pytest.mark.parametrize("thief", ["eve of the same account", "alice of another account"])
async def test_another_client_cannot_use_a_reconnect_token_on_another_gateway(
    thief: str,
    cluster: tuple[Gateway, Gateway],
    accounts: AccountStore,
    devices: DeviceFactory,
    redis_server: RedisServer,
    make_token: Callable[..., str],
) -> None:
    gw_a, gw_b = cluster
    if thief.startswith("eve"):
        stolen_with = make_token("eve")
    else:  # same identity, but another account (the gateways share the account store)
        accounts.add_account(OTHER_ACCOUNT)
        key = ApiKey(OTHER_KEY, "another-account-secret-of-32-bytes!", OTHER_ACCOUNT)
        accounts.add_key(key)
        stolen_with = mint_token(key, "alice")
    bob = Listener(devices("bob", gw_b.url, BOB_HZ))
    await bob.device.register()
    await redis_server.wait_presence(DEV_ACCOUNT_SID, "bob", "gw-b")
    alice = devices("alice", gw_a.url, ALICE_HZ)
    call = await alice.connect(params={"To": "client:bob"})
    await eventually(lambda: call.status() == "open", timeout=15)
    (a_call,) = gw_a.calls.calls
    callsid, token = a_call.caller.callsid, a_call.caller.reconnect_token
    for _ in range(250):  # A records the leg (any gateway may get the reconnect)
        if await redis_server.client.exists(directory.leg_key(callsid)):
            break
        await asyncio.sleep(0.02)

    async with connect(gw_b.url) as eve:  # the thief presents alice's CallSid and token on B
        await eve.send(encode(Listen(token=stolen_with)))
        assert json.loads(await eve.recv())["type"] == "connected"
        await eve.send(encode(Invite(callsid=callsid, sdp=OFFER, reconnect=token, twilio={})))
        reply = json.loads(await asyncio.wait_for(eve.recv(), 10))
    assert reply["type"] == "hangup", reply
    assert reply["payload"]["error"]["code"] == 31107
    assert call.status() == "open" and gw_a.calls.calls == [a_call]
    assert a_call.caller.conn.__class__.__name__ == "ClientConnection"
    call.disconnect()
