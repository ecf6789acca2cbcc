"""A real call's insights: what the SDK publishes reaches the gateway, as the JS SDK names it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from recorders import EventLog, eventually

from softphone.audio_backends import ToneSource
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token


@pytest.fixture
async def api_gateway(accounts: AccountStore, loopback_media: None) -> AsyncIterator[Gateway]:
    gw = Gateway(accounts, GatewayConfig(port=0, api_port=0))
    await gw.start()
    yield gw
    await gw.stop()


async def events_of(
    gateway: Gateway, accounts: AccountStore, sid: str, kind: str = "Events"
) -> list[dict[str, Any]]:
    assert gateway.rest_api is not None
    key = accounts.keys[0]
    basic = base64.b64encode(f"{key.sid}:{key.secret}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{gateway.rest_api.url}/v1/Voice/{sid}/{kind}",
            headers={"Authorization": f"Basic {basic}"},
        ) as response,
    ):
        if response.status != 200:
            return []
        body = await response.json()
        return list(body[body["meta"]["key"]])


async def test_an_echo_call_publishes_its_lifecycle_and_feedback(
    api_gateway: Gateway, accounts: AccountStore
) -> None:
    token = mint_token(
        accounts.default_key(), "alice", outgoing_application_sid=DEV_APPLICATION_SID
    )
    device = Device(token, chunderw=api_gateway.url, file_input_stream=ToneSource([440.0]))
    try:
        call = await device.connect(params={"To": "echo"})
        log = EventLog(call, "accept", "sample")
        await log.wait_for("accept", timeout=15)
        await log.wait_for("sample", count=2, timeout=15)
        call.mute()
        call.mute()  # no change: nothing more published
        assert device.audio is not None
        with pytest.raises(InvalidArgumentError):
            await device.audio.ringtone_devices.set("no-such-device")
        await device.audio.refresh_devices()
        device.plugins.tone.add_tone("new", [300.0])  # a device appears mid-call
        await eventually(lambda: "tone:new" in device.audio.available_input_devices)
        call.disconnect()
        await call.post_feedback(2, "choppy-audio")
        await device.publisher.flush()
        sid = call.call_sid
        assert sid is not None

        async def names() -> list[str]:
            return [
                f"{e['group']}/{e['name']}" for e in await events_of(api_gateway, accounts, sid)
            ]

        await eventually(lambda: device.publisher.pending == 0)
        seen = await names()
        stored = await events_of(api_gateway, accounts, sid)
        metrics = await events_of(api_gateway, accounts, sid, "Metrics")
    finally:
        await device.destroy()
    for expected in (
        "settings/init",
        "settings/edge",
        "pc-connection-state/connected",
        "ice-connection-state/checking",
        "signaling-state/stable",
        "dtls-transport-state/connected",
        "connection/outgoing",
        "get-user-media/succeeded",
        "connection/accepted-by-remote",
        "settings/codec",
        "connection/muted",
        "connection/disconnected-by-local",
        "feedback/received",
        "audio/ringtone-devices-set-failed",
        "ice-candidate/ice-candidate",
        "ice-candidate/selected-ice-candidate-pair",
        "audio/device-change",
    ):
        assert expected in seen, (expected, seen)
    assert seen.count("connection/muted") == 1
    assert seen.index("connection/accepted-by-remote") < seen.index("settings/codec")
    assert device.publisher.refused == 0
    assert len(metrics) >= 2  # every sample, posted when the media closed
    (pair,) = [e for e in stored if e["name"] == "selected-ice-candidate-pair"]
    local = pair["sdk_edge"]["payload"]["local_candidate"]
    assert local["candidate_type"] == "host" and local["is_remote"] is False
    assert local["ip"].startswith("127.") and isinstance(local["port"], int)
    candidate = next(e for e in stored if e["name"] == "ice-candidate")
    assert candidate["sdk_edge"]["payload"]["candidate_type"] == "host"


async def test_publish_events_false_sends_only_feedback(
    api_gateway: Gateway, accounts: AccountStore
) -> None:
    """JS: ``publishEvents: false`` turns insights off, but feedback is still posted."""
    token = mint_token(
        accounts.default_key(), "alice", outgoing_application_sid=DEV_APPLICATION_SID
    )
    device = Device(
        token,
        chunderw=api_gateway.url,
        file_input_stream=ToneSource([440.0]),
        publish_events=False,
    )
    try:
        call = await device.connect(params={"To": "echo"})
        await call.wait_for("accept", timeout=15)
        sid = call.call_sid
        assert sid is not None
        await call.post_feedback(5)
        call.disconnect()
        await device.publisher.flush()
        await eventually(lambda: device.publisher.pending == 0)
        stored = await events_of(api_gateway, accounts, sid)
    finally:
        await device.destroy()
    assert [f"{e['group']}/{e['name']}" for e in stored] == ["feedback/received"]
