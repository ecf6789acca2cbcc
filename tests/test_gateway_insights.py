"""The gateway keeps what SDKs publish, per call, for the call's own account only.

End to end on a real gateway on 127.0.0.1 (REST API on): calls placed over real
signaling (raw frames, so the calls are the gateway's own live calls), events and
metrics posted by the real :class:`EventPublisher`, read back through the REST API
(and the official helper's Insights client). The store's bounds are pure tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from recorders import eventually
from twilio.rest import Client
from websockets.asyncio.client import ClientConnection, connect

from softphone.core.device import Device
from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_API_KEY_SID,
    DEV_APPLICATION_SID,
    AccountStore,
    ApiKey,
    Application,
)
from softphone.gateway.insights_store import (
    InsightsLimits,
    InsightsRejected,
    InsightsStore,
    Poster,
)
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, server_ssl_context
from softphone.gateway.tokens import mint_token
from softphone.insights import endpoint, events
from softphone.insights.events import CallInfo, MetricsBatcher, SessionInfo
from softphone.insights.publisher import EventPublisher
from softphone.signaling.messages import (
    S2C,
    Connected,
    Hangup,
    Heartbeat,
    Invite,
    Listen,
    Message,
    Register,
    Ringing,
    decode,
    encode,
)
from softphone.signaling.params import temp_call_sid
from softphone.version import __version__

OTHER_ACCOUNT = "AC" + "b" * 32
OTHER_KEY = ApiKey("SK" + "b" * 32, "other-account-secret-of-32-bytes-or-more", OTHER_ACCOUNT)
OTHER_APP = "AP" + "b" * 32
DUMMY_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
SESSION = SessionInfo(sdk_version=__version__, gateway="gw1", region="LOOPBACK")
M = TypeVar("M", bound=Message)


@pytest.fixture
def two_accounts() -> AccountStore:
    """The dev account and a second one with its own key and application."""
    store = AccountStore.dev()
    store.add_account(OTHER_ACCOUNT, [Application(OTHER_APP)])
    store.add_key(OTHER_KEY)
    return store


@pytest.fixture
async def api_gateway(two_accounts: AccountStore, loopback_media: None) -> AsyncIterator[Gateway]:
    """A real gateway (plain ws) with its REST API, hence insights, on free ports."""
    gw = Gateway(two_accounts, GatewayConfig(port=0, api_port=0, heartbeat_interval_s=1.0))
    await gw.start()
    yield gw
    await gw.stop()


def dev_token(two_accounts: AccountStore, identity: str, **kwargs: Any) -> str:
    kwargs.setdefault("outgoing_application_sid", DEV_APPLICATION_SID)
    return mint_token(two_accounts.default_key(), identity, **kwargs)


def other_token(identity: str) -> str:
    return mint_token(OTHER_KEY, identity, outgoing_application_sid=OTHER_APP)


class RawClient:
    """A signaling client speaking our codec over a real WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, gateway: Gateway, token: str, ssl: Any = None
    ) -> tuple[RawClient, Connected]:
        client = cls(await connect(gateway.url, ssl=ssl))
        await client.send(Listen(token=token))
        return client, await client.expect(Connected)

    async def send(self, message: Message) -> None:
        await self.ws.send(encode(message))

    async def expect(self, kind: type[M]) -> M:
        """The next frame of type ``kind`` (heartbeats and others skipped)."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 10)
            message = decode(frame, S2C)
            if isinstance(message, kind):
                return message
            assert isinstance(message, Heartbeat | Message)

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def ringing_call(
    api_gateway: Gateway, two_accounts: AccountStore
) -> AsyncIterator[dict[str, Any]]:
    """alice calls client:bob and it rings: the gateway's live call and everybody's ids."""
    bob, _ = await RawClient.open(api_gateway, dev_token(two_accounts, "bob"))
    await bob.send(Register.presence(True))
    alice, connected = await RawClient.open(api_gateway, dev_token(two_accounts, "alice"))
    temp = temp_call_sid()
    twilio = {"accountsid": None, "params": "To=client%3Abob"}
    await alice.send(Invite(callsid=temp, sdp=DUMMY_SDP, twilio=twilio))
    ringing = await alice.expect(Ringing)
    incoming = await bob.expect(Invite)
    assert ringing.callsid is not None and incoming.parameters is not None
    yield {
        "alice": alice,
        "bob": bob,
        "connected": connected,
        "temp_sid": temp,
        "call_sid": ringing.callsid,
        "child_sid": incoming.parameters["CallSid"],
    }
    await alice.close()
    await bob.close()


def publisher_for(gateway: Gateway, token: str, **kwargs: Any) -> EventPublisher:
    assert gateway.rest_api is not None
    base = gateway.rest_api.insights_url(gateway.host_port)
    return EventPublisher(
        token,
        host=base,
        default_payload=lambda call: events.default_payload(SESSION, call),
        metadata={"app_name": "tests", "app_version": "1"},
        **kwargs,
    )


def helper_client(gateway: Gateway, key_sid: str, secret: str, account: str) -> Client:
    assert gateway.rest_api is not None
    client = Client(key_sid, secret, account)
    client.insights.base_url = gateway.rest_api.url
    return client


async def rest_get(gateway: Gateway, path: str, key: ApiKey) -> tuple[int, Any]:
    assert gateway.rest_api is not None
    basic = base64.b64encode(f"{key.sid}:{key.secret}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.rest_api.url + path, headers=headers) as response,
    ):
        return response.status, await response.json()


async def raw_post(
    gateway: Gateway, path: str, body: bytes, token: str | None
) -> tuple[int, dict[str, Any]]:
    assert gateway.rest_api is not None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers[endpoint.TOKEN_HEADER] = token
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.rest_api.url + path, data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


def event_body(call: CallInfo, group: str = "connection", name: str = "incoming") -> bytes:
    payload = events.default_payload(SESSION, call)
    return events.to_json(events.envelope("info", group, name, payload, now=time.time()))


# -- connected names the endpoint ------------------------------------------------------


async def test_connected_names_the_insights_base_url(
    api_gateway: Gateway, two_accounts: AccountStore
) -> None:
    client, connected = await RawClient.open(api_gateway, dev_token(two_accounts, "alice"))
    await client.close()
    assert api_gateway.rest_api is not None
    expected = f"http://127.0.0.1:{api_gateway.rest_api.port}"
    assert connected.extra[endpoint.CONNECTED_FIELD] == expected
    # what a Device does with it: it is on the signaling host, so it is believed
    assert endpoint.from_connected(connected.extra["insights"], api_gateway.url) == expected
    assert endpoint.select_base_url(None, connected.extra["insights"], api_gateway.url) == expected


async def test_over_tls_the_insights_url_is_https_and_posts_are_verified(
    two_accounts: AccountStore, loopback_media: None, cert_files: tuple[Path, Path]
) -> None:
    cert, key = cert_files
    config = GatewayConfig(port=0, api_port=0, ssl_context=server_ssl_context(cert, key))
    async with Gateway(two_accounts, config) as gw:
        trust = client_ssl_context(str(cert))
        token = dev_token(two_accounts, "alice")
        client, connected = await RawClient.open(gw, token, ssl=trust)
        await client.close()
        base = connected.extra[endpoint.CONNECTED_FIELD]
        assert gw.rest_api is not None and base == f"https://127.0.0.1:{gw.rest_api.port}"
        assert endpoint.from_connected(base, gw.url) == base  # wss signaling, https insights
        publisher = EventPublisher(token, host=base, ssl_context=trust)
        assert publisher.publish(events.feedback(5), CallInfo(temp_call_sid="TJStls"))
        await publisher.close()
        assert publisher.sent == 1
        assert gw.rest_api.insights is not None and len(gw.rest_api.insights) == 1


async def test_insights_are_served_on_the_gateways_own_port_unless_rest_is_off(
    gateway: Gateway, make_token: Any, accounts: AccountStore, loopback_media: None
) -> None:
    client, connected = await RawClient.open(gateway, make_token("alice"))
    await client.close()
    assert connected.extra[endpoint.CONNECTED_FIELD] == f"http://127.0.0.1:{gateway.port}"
    quiet = await Gateway(accounts, GatewayConfig(port=0, rest=False)).start()
    try:
        client, connected = await RawClient.open(quiet, make_token("alice"))
        await client.close()
        assert quiet.rest_api is None
        assert endpoint.CONNECTED_FIELD not in connected.extra
        assert endpoint.select_base_url(None, connected.extra.get("insights"), quiet.url) is None
    finally:
        await quiet.stop()


# -- the real publisher into the real store ----------------------------------------------


async def test_published_events_are_kept_per_call_and_read_back(
    api_gateway: Gateway, two_accounts: AccountStore, ringing_call: dict[str, Any]
) -> None:
    alice_token = dev_token(two_accounts, "alice")
    publisher = publisher_for(api_gateway, alice_token)
    temp, sid = ringing_call["temp_sid"], ringing_call["call_sid"]
    before_sid = CallInfo(temp_call_sid=temp, direction="OUTGOING")
    with_sid = CallInfo(call_sid=sid, temp_call_sid=temp, direction="OUTGOING", codec="opus")
    assert publisher.publish(events.outgoing(preflight=False, reconnect=False), before_sid)
    assert publisher.publish(events.outgoing_ringing(False), with_sid)
    assert publisher.publish(events.feedback(4, "echo"), with_sid)
    bob_publisher = publisher_for(api_gateway, dev_token(two_accounts, "bob"))
    bob_call = CallInfo(
        call_sid=ringing_call["child_sid"], temp_call_sid=temp_call_sid(), direction="INCOMING"
    )
    assert bob_publisher.publish(events.connection_event("incoming"), bob_call)
    await publisher.close()
    await bob_publisher.close()
    assert (publisher.sent, publisher.refused, publisher.dropped) == (3, 0, 0)
    assert bob_publisher.sent == 1

    # the official helper lists them like Voice Insights events
    secret = two_accounts.default_key().secret
    client = helper_client(api_gateway, DEV_API_KEY_SID, secret, DEV_ACCOUNT_SID)
    listed = await asyncio.to_thread(client.insights.v1.calls(sid).events.list)
    assert [(e.group, e.name, e.level) for e in listed] == [
        ("connection", "outgoing", "INFO"),
        ("connection", "outgoing-ringing", "INFO"),
        ("feedback", "received", "INFO"),
    ]
    assert {e.call_sid for e in listed} == {sid}
    assert {e.account_sid for e in listed} == {DEV_ACCOUNT_SID}
    first, second, third = (e.sdk_edge for e in listed)
    assert first is not None and second is not None and third is not None
    assert first["payload"]["temp_call_sid"] == temp and "call_sid" not in first["payload"]
    assert first["payload"]["preflight"] is False and first["identity"] == "alice"
    assert second["payload"]["call_sid"] == sid and second["payload"]["audio_codec"] == "opus"
    assert second["payload"]["hasEarlyMedia"] is False
    assert second["publisher"] == "twilio-js-sdk"
    assert second["publisher_metadata"] == {"app_name": "tests", "app_version": "1"}
    assert third["payload"]["quality_score"] == 4

    # the temporary id names the same call
    status, by_temp = await rest_get(api_gateway, f"/v1/Voice/{temp}/Events", two_accounts.keys[0])
    assert status == 200 and len(by_temp["events"]) == 3
    assert by_temp["meta"]["key"] == "events" and by_temp["meta"]["next_page_url"] is None

    status, feedback = await rest_get(api_gateway, f"/v1/Voice/{sid}/Feedback", OTHER_KEY)
    assert status == 404  # another account does not even learn the call exists
    status, feedback = await rest_get(
        api_gateway, f"/v1/Voice/{sid}/Feedback", two_accounts.keys[0]
    )
    assert status == 200
    assert [(f["quality_score"], f["issue_name"], f["identity"]) for f in feedback["feedback"]] == [
        (4, "echo", "alice")
    ]

    # the callee's leg is its own call (its own CallSid), kept apart
    status, child = await rest_get(
        api_gateway, f"/v1/Voice/{ringing_call['child_sid']}/Events", two_accounts.keys[0]
    )
    assert status == 200 and [e["name"] for e in child["events"]] == ["incoming"]
    assert child["events"][0]["sdk_edge"]["identity"] == "bob"


async def test_feedback_after_hangup_joins_the_ended_call(
    api_gateway: Gateway, two_accounts: AccountStore, ringing_call: dict[str, Any]
) -> None:
    publisher = publisher_for(api_gateway, dev_token(two_accounts, "alice"))
    sid, temp = ringing_call["call_sid"], ringing_call["temp_sid"]
    call = CallInfo(call_sid=sid, temp_call_sid=temp, direction="OUTGOING")
    publisher.publish(events.outgoing_ringing(False), call)
    assert await publisher.flush()
    await ringing_call["alice"].send(Hangup(callsid=sid))
    await eventually(lambda: not api_gateway.calls.calls)
    publisher.disable()  # publishEvents: false still sends feedback (forced)
    assert not publisher.publish(events.connection_event("disconnected-by-local"), call)
    assert publisher.publish(events.feedback(), call)
    await publisher.close()
    assert publisher.sent == 2 and publisher.refused == 0
    status, body = await rest_get(api_gateway, f"/v1/Voice/{sid}/Feedback", two_accounts.keys[0])
    assert status == 200
    assert [(f["quality_score"], f["issue_name"]) for f in body["feedback"]] == [(None, None)]


async def test_metrics_batches_are_kept_as_samples(
    api_gateway: Gateway, two_accounts: AccountStore, ringing_call: dict[str, Any]
) -> None:
    publisher = publisher_for(api_gateway, dev_token(two_accounts, "alice"))
    sid = ringing_call["call_sid"]
    call = CallInfo(call_sid=sid, temp_call_sid=ringing_call["temp_sid"], direction="OUTGOING")
    fields = events.metrics_fields(
        call_sid=sid, dscp=True, sdk_version=__version__, direction="OUTGOING"
    )
    batcher = MetricsBatcher()
    posted = 0
    for second in range(12):
        batch = batcher.add(_sample(1_700_000_000_000 + second * 1000), 0.25, 0.5)
        if batch is not None:
            assert publisher.post_metrics(
                events.METRICS_GROUP, events.METRICS_NAME, batch, fields, call
            )
            posted += 1
    assert posted == 1 and len(batcher) == 2
    assert publisher.post_metrics(
        events.METRICS_GROUP, events.METRICS_NAME, batcher.drain(), fields, call
    )
    await publisher.close()
    assert publisher.sent == 2

    secret = two_accounts.default_key().secret
    client = helper_client(api_gateway, DEV_API_KEY_SID, secret, DEV_ACCOUNT_SID)
    metrics = await asyncio.to_thread(client.insights.v1.calls(sid).metrics.list)
    assert len(metrics) == 12
    records = [m.sdk_edge for m in metrics]
    assert all(r is not None for r in records)
    assert [r["timestamp"] for r in records if r] == [
        f"2023-11-14T22:13:{20 + s:02d}.000Z" for s in range(12)
    ]
    first = records[0]
    assert first is not None
    assert first["call_sid"] == sid and first["direction"] == "OUTGOING"
    assert first["call_volume_input"] == 0.25 and first["call_volume_output"] == 0.5
    assert first["mos"] == 4.35 and first["total_packets_sent"] == 50


def _sample(timestamp_ms: int) -> dict[str, Any]:
    return {
        "audioInputLevel": 1000,
        "audioOutputLevel": 2000,
        "bytesReceived": 8000,
        "bytesSent": 8000,
        "codecName": "opus",
        "jitter": 3,
        "mos": 4.3456,
        "packetsLost": 0,
        "packetsLostFraction": 0,
        "packetsReceived": 50,
        "packetsSent": 50,
        "rtt": 12,
        "timestamp": timestamp_ms,
        "totals": {
            "bytesReceived": 8000,
            "bytesSent": 8000,
            "packetsLost": 0,
            "packetsLostFraction": 0,
            "packetsReceived": 50,
            "packetsSent": 50,
        },
    }


# -- refusals ----------------------------------------------------------------------------


async def test_a_wrong_or_missing_token_is_refused(
    api_gateway: Gateway, two_accounts: AccountStore, ringing_call: dict[str, Any]
) -> None:
    call = CallInfo(call_sid=ringing_call["call_sid"], direction="OUTGOING")
    body = event_body(call)
    wrong_key = ApiKey(DEV_API_KEY_SID, "a-wrong-secret-that-is-32-bytes-long", DEV_ACCOUNT_SID)
    forged = mint_token(wrong_key, "alice")
    expired = dev_token(two_accounts, "alice", ttl=60, now=time.time() - 3600)
    cases = [(forged, 20101), (expired, 20104), (None, 20101), ("not a jwt", 20101)]
    for token, code in cases:
        status, answer = await raw_post(api_gateway, endpoint.EVENTS_PATH, body, token)
        assert (status, answer["code"]) == (401, code), token
    # the real publisher with a forged token: delivered-but-refused, nothing stored
    publisher = publisher_for(api_gateway, forged)
    assert publisher.publish(events.connection_event("incoming"), call)
    await publisher.close()
    assert (publisher.sent, publisher.refused) == (0, 1)
    assert api_gateway.rest_api is not None and api_gateway.rest_api.insights is not None
    assert len(api_gateway.rest_api.insights) == 0


async def test_another_accounts_events_for_a_call_are_refused(
    api_gateway: Gateway, two_accounts: AccountStore, ringing_call: dict[str, Any]
) -> None:
    sid, temp = ringing_call["call_sid"], ringing_call["temp_sid"]
    intruder = other_token("mallory")
    for call in (
        CallInfo(call_sid=sid, direction="OUTGOING"),
        CallInfo(temp_call_sid=temp, direction="OUTGOING"),  # the live call's temporary id
        CallInfo(call_sid=ringing_call["child_sid"], direction="INCOMING"),
    ):
        status, answer = await raw_post(
            api_gateway, endpoint.EVENTS_PATH, event_body(call), intruder
        )
        assert status == 403 and "another account" in answer["message"]
    metrics = events.to_json(
        events.envelope(
            "info",
            events.METRICS_GROUP,
            events.METRICS_NAME,
            [
                {
                    **events.metric_record({**_sample(0), "inputVolume": 0, "outputVolume": 0}),
                    "call_sid": sid,
                }
            ],
            now=time.time(),
        )
    )
    status, _ = await raw_post(api_gateway, endpoint.METRICS_PATH, metrics, intruder)
    assert status == 403
    # the owner's own post for the same call is fine, and the store has only it
    status, answer = await raw_post(
        api_gateway,
        endpoint.EVENTS_PATH,
        event_body(CallInfo(call_sid=sid, temp_call_sid=temp)),
        dev_token(two_accounts, "alice"),
    )
    assert (status, answer["call"], answer["stored"]) == (200, sid, 1)
    store = api_gateway.rest_api.insights if api_gateway.rest_api else None
    assert store is not None and len(store) == 1
    # once the intruder's own account has an entry under some id, the owner cannot take it
    status, _ = await raw_post(
        api_gateway,
        endpoint.EVENTS_PATH,
        event_body(CallInfo(temp_call_sid="TJSmallory")),
        intruder,
    )
    assert status == 200
    status, _ = await raw_post(
        api_gateway,
        endpoint.EVENTS_PATH,
        event_body(CallInfo(temp_call_sid="TJSmallory")),
        dev_token(two_accounts, "alice"),
    )
    assert status == 403


async def test_unknown_calls_and_malformed_bodies_are_refused(
    api_gateway: Gateway, two_accounts: AccountStore
) -> None:
    token = dev_token(two_accounts, "alice")
    unknown = event_body(CallInfo(call_sid="CA" + "0" * 32))
    status, answer = await raw_post(api_gateway, endpoint.EVENTS_PATH, unknown, token)
    assert (status, answer["code"]) == (404, 20404)
    no_ids = events.to_json(events.envelope("info", "g", "n", {}, now=time.time()))
    deep = b'{"group":"g","name":"n","level":"INFO","timestamp":"t","payload":' + b"[" * 50_000
    not_a_level = event_body(CallInfo(temp_call_sid="TJSx")).replace(b'"INFO"', b'"LOUD"')
    for body in (b"not json", b"[]", no_ids, deep, not_a_level, b'{"payload": NaN}'):
        status, answer = await raw_post(api_gateway, endpoint.EVENTS_PATH, body, token)
        assert status == 400, body[:80]
    too_big = b" " * (InsightsLimits().max_body_bytes + 1)
    status, answer = await raw_post(api_gateway, endpoint.EVENTS_PATH, too_big, token)
    assert status == 413
    publisher = publisher_for(api_gateway, token, max_body_bytes=10 * 1024 * 1024)
    huge = {"blob": "x" * 100_000}
    assert publisher.post("info", "g", "n", huge, CallInfo(temp_call_sid="TJSy"))
    await publisher.close()
    assert publisher.refused == 1  # the gateway's 413, logged, not raised
    store = api_gateway.rest_api.insights if api_gateway.rest_api else None
    assert store is not None and len(store) == 0


async def test_unreachable_gateway_api_drops_without_raising(
    api_gateway: Gateway, two_accounts: AccountStore
) -> None:
    assert api_gateway.rest_api is not None
    base = api_gateway.rest_api.url
    await api_gateway.rest_api.stop()  # the port is closed now
    errors: list[Exception] = []
    publisher = EventPublisher(dev_token(two_accounts, "alice"), host=base, on_error=errors.append)
    call = CallInfo(temp_call_sid="TJSz")
    assert all(publisher.info("connection", "incoming", None, call) for _ in range(5))
    await publisher.close()
    assert publisher.sent == 0 and publisher.dropped == 5
    assert len(errors) == 1  # one attempt, then the pause drops the rest


# -- the store's bounds (pure) --------------------------------------------------------------


class KnownCalls:
    """A directory of live calls given as a dict (sid -> account)."""

    def __init__(self, calls: dict[str, str] | None = None) -> None:
        self.calls = calls or {}

    def owner_of(self, sid: str) -> str | None:
        return self.calls.get(sid)


ALICE = Poster(DEV_ACCOUNT_SID, "alice")
MALLORY = Poster(OTHER_ACCOUNT, "mallory")


def _event(call_sid: str | None = None, temp: str | None = None, *, pad: int = 0) -> bytes:
    payload: dict[str, Any] = {"pad": "x" * pad}
    if call_sid:
        payload["call_sid"] = call_sid
    if temp:
        payload["temp_call_sid"] = temp
    return json.dumps(
        {"group": "g", "name": "n", "level": "INFO", "timestamp": "t", "payload": payload}
    ).encode()


@pytest.mark.pure
def test_per_call_counts_and_bytes_are_bounded() -> None:
    limits = InsightsLimits(max_events_per_call=5, max_call_bytes=10_000, max_feedback_per_call=1)
    store = InsightsStore(KnownCalls({"CA1": DEV_ACCOUNT_SID}), limits)
    results = [store.add_event(ALICE, _event("CA1"), now=0) for _ in range(8)]
    assert [r.stored for r in results] == [1] * 5 + [0] * 3
    entry = store.get(DEV_ACCOUNT_SID, "CA1")
    assert entry is not None and len(entry.events) == 5 and entry.dropped == 3
    store2 = InsightsStore(KnownCalls({"CA1": DEV_ACCOUNT_SID}), limits)
    for _ in range(10):
        store2.add_event(ALICE, _event("CA1", pad=3000), now=0)
    entry = store2.get(DEV_ACCOUNT_SID, "CA1")
    assert entry is not None and entry.size <= 10_000 and len(entry.events) == 3
    feedback = json.dumps(
        {"group": "feedback", "name": "received", "level": "INFO", "timestamp": "t",
         "payload": {"call_sid": "CA1", "quality_score": 5}}
    ).encode()  # fmt: skip
    store3 = InsightsStore(KnownCalls({"CA1": DEV_ACCOUNT_SID}), limits)
    assert [store3.add_event(ALICE, feedback, now=0).stored for _ in range(3)] == [2, 1, 1]
    entry = store3.get(DEV_ACCOUNT_SID, "CA1")
    assert entry is not None and len(entry.feedback) == 1 and len(entry.events) == 3


@pytest.mark.pure
def test_a_flooding_account_only_evicts_its_own_entries() -> None:
    limits = InsightsLimits(
        max_calls=10, max_calls_per_account=5, max_account_bytes=50_000, max_total_bytes=100_000
    )
    store = InsightsStore(KnownCalls({"CA1": DEV_ACCOUNT_SID}), limits)
    store.add_event(ALICE, _event("CA1"), now=0)
    for n in range(1000):
        store.add_event(MALLORY, _event(temp=f"TJSm{n}", pad=500), now=n)
    assert store.get(DEV_ACCOUNT_SID, "CA1") is not None
    assert store.account_bytes(OTHER_ACCOUNT) <= 50_000
    assert len(store) <= 10 and store.total_bytes <= 100_000
    assert store.get(OTHER_ACCOUNT, "TJSm999") is not None  # the newest are kept
    assert store.get(OTHER_ACCOUNT, "TJSm0") is None and store.evicted >= 995
    # overall bound: many honest accounts still never exceed it
    for n in range(50):
        poster = Poster(f"AC{n:032d}", "x")
        store.add_event(poster, _event(temp=f"TJSa{n}", pad=4000), now=2000 + n)
        assert len(store) <= 10 and store.total_bytes <= 100_000


@pytest.mark.pure
def test_temporary_id_entries_join_the_call_sid_entry() -> None:
    store = InsightsStore(KnownCalls({"CA1": DEV_ACCOUNT_SID}))
    store.add_event(ALICE, _event(temp="TJS1"), now=0)
    store.add_event(ALICE, _event(temp="TJS1"), now=1)
    result = store.add_event(ALICE, _event("CA1", "TJS1"), now=2)
    assert result.key == "CA1" and len(store) == 1
    entry = store.get(DEV_ACCOUNT_SID, "TJS1")
    assert entry is store.get(DEV_ACCOUNT_SID, "CA1")
    assert entry is not None and len(entry.events) == 3
    assert store.add_event(ALICE, _event(temp="TJS1"), now=3).key == "CA1"
    # a temporary entry of another account is not merged into this call
    store.add_event(MALLORY, _event(temp="TJS2"), now=4)
    store.add_event(ALICE, _event("CA1", "TJS2"), now=5)
    assert store.get(OTHER_ACCOUNT, "TJS2") is not None and len(store) == 2
    with pytest.raises(InsightsRejected) as info:
        store.add_event(MALLORY, _event("CA1"), now=6)
    assert info.value.status == 403


@pytest.mark.pure
def test_stored_bytes_track_the_memory_they_cost() -> None:
    """The byte bound is honest: what the store counts is close to what it allocates."""
    limits = InsightsLimits(max_total_bytes=2 * 1024 * 1024, max_account_bytes=2 * 1024 * 1024)
    directory = KnownCalls({f"CA{n}": DEV_ACCOUNT_SID for n in range(200)})
    store = InsightsStore(directory, limits)
    bodies = [_event(f"CA{n % 200}", pad=600) for n in range(8000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, body in enumerate(bodies):
            store.add_event(ALICE, body, now=n)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.total_bytes <= limits.max_total_bytes
    assert store.total_bytes > limits.max_total_bytes * 0.9  # full: eviction was needed
    assert used < store.total_bytes * 1.5, (used, store.total_bytes)


async def test_the_gateway_command_says_where_insights_are(api_gateway: Gateway) -> None:
    from softphone.cli_gateway import _media_summary

    assert api_gateway.rest_api is not None
    base = api_gateway.rest_api.url
    [line] = [line for line in _media_summary(api_gateway) if "insights" in line]
    assert f"{base}/v4/EndpointEvents" in line and f"{base}/v1/Voice/<CallSid>/Events" in line


async def test_a_calls_insights_outlive_a_gateway_restart(
    two_accounts: AccountStore, tmp_path: Path, loopback_media: None
) -> None:
    """A real Device's events, samples and feedback are in the call store, so the REST
    API still serves them after the gateway restarted (memory empty)."""
    config = GatewayConfig(port=0, db_path=tmp_path / "calls.sqlite3")
    key = two_accounts.keys[0]
    gw = await Gateway(two_accounts, config).start()
    try:
        device = Device(dev_token(two_accounts, "alice"), chunderw=gw.url)
        call = await device.connect(params={"To": "echo"})
        await call.wait_for("accept", timeout=15)
        await call.wait_for("sample", timeout=15)
        sid = call.parameters["CallSid"]
        call.disconnect()
        await call.post_feedback(5, None)
        await device.destroy()  # flushes what it still has to publish

        async def names(gateway: Gateway, what: str) -> list[str]:
            status, body = await rest_get(gateway, f"/v1/Voice/{sid}/{what}", key)
            assert status == 200, body
            return [json.dumps(item, sort_keys=True) for item in body[what.lower()]]

        await eventually(
            lambda: bool(gw.rest_api and gw.rest_api.insights and len(gw.rest_api.insights))
        )
        before = {what: await names(gw, what) for what in ("Events", "Metrics", "Feedback")}
    finally:
        await gw.stop()
    assert len(before["Events"]) >= 3 and before["Metrics"] and len(before["Feedback"]) == 1
    again = await Gateway(two_accounts, GatewayConfig(port=0, db_path=config.db_path)).start()
    try:
        assert again.rest_api is not None and again.rest_api.insights is not None
        assert len(again.rest_api.insights) == 0  # nothing in memory: read from the store
        after = {what: await names(again, what) for what in ("Events", "Metrics", "Feedback")}
    finally:
        await again.stop()
    assert after == before
