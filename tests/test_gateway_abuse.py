"""Issue 9, gateway half: every way one client could hurt the others, reproduced and fixed.

Clients here speak the wire protocol directly (``benchmarks.wire``): raw sockets for
clients that never read or flood, ``websockets`` clients for the well-behaved ones.
Where a stuck event loop is the point (a client that never reads, floods, sockets
reaped one at a time), the gateway runs as ``softphone gateway`` in its own process;
routing rules (accounts, tokens, calls) run against an in-process :class:`Gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import jwt
import pytest
from recorders import eventually
from websockets.exceptions import ConnectionClosed

from benchmarks.wire import (
    Flooder,
    GatewayChild,
    RawClient,
    WireClient,
    client_frame,
    dead_offer,
    temp_sid,
)
from softphone.gateway import log_throttle
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore, ApiKey, Application
from softphone.gateway.limits import Limits
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.signaling.messages import (
    Answer,
    Dtmf,
    Error,
    Hangup,
    Invite,
    Listen,
    Message,
    Register,
)

JS_SILENCE_LIMIT_S = 15.0
"""The JS SDK drops a socket from which nothing arrived for 15 s."""
OTHER_ACCOUNT = "AC" + "b" * 32
OTHER_KEY = ApiKey("SK" + "b" * 32, "another-account-secret-0123456789abcdef", OTHER_ACCOUNT)
OTHER_APP = "AP" + "b" * 32

Tokens = Callable[..., str]
StartClient = Callable[[str | None], Awaitable[WireClient]]


def error_code(message: Message) -> int | None:
    """The error code carried by an ``error`` or ``hangup`` frame."""
    body = message.error if isinstance(message, Error | Hangup) else None
    return None if body is None else body.get("code")


def token_for(identity: str, **kwargs: object) -> str:
    """A dev-account token (for gateways in their own process)."""
    kwargs.setdefault("outgoing_application_sid", DEV_APPLICATION_SID)
    return mint_token(AccountStore.dev().default_key(), identity, **kwargs)  # type: ignore[arg-type]


# -- fixtures: two accounts on one in-process gateway ---------------------------------------
@pytest.fixture
def two_accounts() -> AccountStore:
    """The dev account and a second customer; both have a ``bob`` and an ``alice``."""
    store = AccountStore.dev()
    store.add_account(OTHER_ACCOUNT, [Application(OTHER_APP)])
    store.add_key(OTHER_KEY)
    return store


@pytest.fixture
def tokens(two_accounts: AccountStore) -> Tokens:
    """``tokens("alice")`` for the dev account, ``tokens("alice", other=True)`` for the other."""

    def make(identity: str, *, other: bool = False, **kwargs: object) -> str:
        key = OTHER_KEY if other else two_accounts.default_key()
        kwargs.setdefault("outgoing_application_sid", OTHER_APP if other else DEV_APPLICATION_SID)
        return mint_token(key, identity, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def limits() -> Limits:
    """Overridden by tests that need tighter limits."""
    return Limits()


@pytest.fixture
async def shared(
    two_accounts: AccountStore, limits: Limits, loopback_media: None
) -> AsyncIterator[Gateway]:
    """An in-process gateway serving both accounts."""
    gateway = Gateway(two_accounts, GatewayConfig(port=0, heartbeat_interval_s=1.0, limits=limits))
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def clients(shared: Gateway) -> AsyncIterator[StartClient]:
    """Start :class:`WireClient`s on ``shared``; all stopped at teardown."""
    started: list[WireClient] = []

    async def start(token: str | None) -> WireClient:
        client = await WireClient(shared.url, token).start()
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


async def registered(start: StartClient, token: str) -> WireClient:
    client = await start(token)
    await client.send(Register.presence(True))
    await client.wait_for("ready")
    return client


async def place_echo_call(client: WireClient, index: int = 1) -> str:
    """An echo call whose media never starts; its CallSid."""
    await client.send(Invite(callsid=temp_sid(index), sdp=await dead_offer(), twilio={}))
    answer = await client.wait_for("answer", count=len(client.of_type("answer")) + 1)
    assert isinstance(answer, Answer) and answer.callsid and answer.reconnect
    return answer.callsid


# -- a client that never reads --------------------------------------------------------------
async def test_a_client_that_never_reads_does_not_silence_the_others(tmp_path: Path) -> None:
    """Old gateway: its heartbeat loop waited on the non-reader's full socket, forever."""
    gateway = GatewayChild(
        tmp_path / "gateway.log", "--heartbeat-interval", "1", "--max-frame-rate", "0"
    )
    async with gateway:
        good = await WireClient(gateway.url, token_for("goodclient")).start()
        abuser = Flooder(gateway.port, client_frame("not json"), read=False, reconnect=False)
        started = time.monotonic()
        abuser.start()
        try:
            await asyncio.sleep(JS_SILENCE_LIMIT_S + 8)
            silence = good.longest_silence(started, time.monotonic())
            dropped = abuser.closed_by_gateway.is_set()
        finally:
            await asyncio.to_thread(abuser.stop)
            await good.stop()
    assert abuser.frames_sent > 10_000  # it did push the gateway's buffers to the brim
    assert silence < JS_SILENCE_LIMIT_S, f"{silence:.1f} s without a heartbeat"
    assert dropped, "the gateway should drop a client that cannot keep up"
    assert "cannot keep up" in gateway.log_text()


async def test_silent_sockets_are_reaped_together(tmp_path: Path) -> None:
    """Old gateway: one ``close()`` at a time, 10 s each, heartbeats stopped meanwhile."""
    gateway = GatewayChild(
        tmp_path / "gateway.log", "--heartbeat-interval", "1", "--idle-timeout", "2"
    )
    async with gateway:
        good = await WireClient(gateway.url, token_for("goodclient")).start()
        started = time.monotonic()
        silent = [RawClient(gateway.port, receive_buffer=4096) for _ in range(4)]
        try:
            closed = await asyncio.gather(
                *(asyncio.to_thread(s.closed_by_peer, 40.0) for s in silent)
            )
            silence = good.longest_silence(started, time.monotonic())
            good_code = await good.closed(0)
        finally:
            for s in silent:
                s.close()
            await good.stop()
    assert all(closed), "every silent socket is closed"
    assert silence < JS_SILENCE_LIMIT_S, f"{silence:.1f} s without a heartbeat"
    assert good_code is None  # the well-behaved client echoes heartbeats: never idle


# -- floods ---------------------------------------------------------------------------------
async def test_a_frame_flood_is_cut_off_with_31206_and_logged_sparingly(tmp_path: Path) -> None:
    """Old gateway: answered and logged all 53,000 bad frames/s; new clients waited seconds."""
    async with GatewayChild(tmp_path / "gateway.log") as gateway:
        started = time.monotonic()
        flooder = await WireClient(gateway.url, None).start()
        with contextlib.suppress(ConnectionClosed):
            for _ in range(5000):
                await flooder.send_raw("not json")
        close_code = await flooder.closed(10)
        errors = flooder.of_type("error")
        # meanwhile others keep flooding; a newcomer still gets in
        others = [Flooder(gateway.port, client_frame("not json")) for _ in range(2)]
        for thread in others:
            thread.start()
        try:
            newcomer = await WireClient(gateway.url, token_for("newcomer")).start()
            await newcomer.stop()
            for thread in others:
                assert await asyncio.to_thread(thread.closed_by_gateway.wait, 20)
        finally:
            for thread in others:
                await asyncio.to_thread(thread.stop)
        log = gateway.log_text()
        elapsed = time.monotonic() - started
    assert close_code == 1008
    assert isinstance(errors[-1], Error) and errors[-1].code == 31206
    assert errors[-1].retry_after is not None and errors[-1].retry_after > 0
    assert all(error_code(e) == 31100 for e in errors[:-1])
    assert len(errors) - 1 <= Limits().frame_burst + 5  # then it was cut off
    logged = log.count("malformed frame")
    assert 0 < logged <= log_throttle.BURST + log_throttle.PER_SECOND * elapsed + 1
    assert "similar suppressed" in log


# -- huge and endless fields ----------------------------------------------------------------
async def test_megabyte_dtmf_frames_close_the_socket(clients: StartClient, tokens: Tokens) -> None:
    """Old gateway: 20 frames of 1 MB digits kept ~170 MB after the hangup."""
    client = await clients(tokens("alice"))
    callsid = await place_echo_call(client)
    await client.send(Dtmf(callsid=callsid, dtmf="1" * 1_000_000))
    assert await client.closed(10) == 1009  # over max_frame_bytes


@pytest.mark.parametrize("limits", [Limits(max_call_records=3)])
async def test_digits_and_records_are_bounded(
    shared: Gateway, clients: StartClient, tokens: Tokens
) -> None:
    client = await clients(tokens("alice"))
    callsid = await place_echo_call(client)
    await client.send(Dtmf(callsid=callsid, dtmf="1" * 257))
    await client.send(Dtmf(callsid=callsid, dtmf="12x"))
    refused = [await client.wait_for("error", count=n) for n in (1, 2)]
    assert [error_code(m) for m in refused] == [31100, 31100]
    assert all(isinstance(m, Error) and m.callsid == callsid for m in refused)
    for _ in range(30):
        await client.send(Dtmf(callsid=callsid, dtmf="1234567890"))
    await client.send(Hangup(callsid=callsid))
    await eventually(lambda: bool(shared.calls.records))
    record = shared.calls.records[-1]
    assert record["digits"] == "1234567890" * 25 + "123456"
    assert record["digits_dropped"] == 300 - 256
    for index in range(2, 6):
        await client.send(Hangup(callsid=await place_echo_call(client, index)))
    await eventually(lambda: shared.calls.calls == [])
    assert len(shared.calls.records) == 3


async def test_ids_are_bounded_and_never_echoed(clients: StartClient, tokens: Tokens) -> None:
    client = await clients(tokens("alice"))
    await client.send(Invite(callsid="TJS" + "x" * 60_000, sdp="v=0", twilio={}))
    refused = await client.wait_for("error")
    assert error_code(refused) == 31100 and len(str(refused.payload())) < 200
    await client.send_raw('{"type": "' + "t" * 60_000 + '", "payload": 1, "version": "1.6"}')
    malformed = await client.wait_for("error", count=2)
    assert error_code(malformed) == 31100 and len(str(malformed.payload())) < 400


# -- calls whose media never starts, and call caps ------------------------------------------
@pytest.mark.parametrize(
    "limits", [Limits(media_timeout_s=4, max_calls_per_connection=3, max_calls_per_account=4)]
)
async def test_medialess_calls_are_hung_up_and_capped(
    shared: Gateway, clients: StartClient, tokens: Tokens
) -> None:
    """Old gateway: 500 echo calls in 1.5 s, never ended, one UDP socket each."""
    first = await clients(tokens("alice"))
    second = await clients(tokens("carol"))
    other = await clients(tokens("alice", other=True))
    offer = await dead_offer()
    for index in range(4):
        await first.send(Invite(callsid=temp_sid(index), sdp=offer, twilio={}))
    await first.wait_for("answer", count=3)
    refused = await first.wait_for("hangup")
    assert isinstance(refused, Hangup) and refused.callsid == temp_sid(3)
    assert error_code(refused) == 31206  # 3 per connection
    for index in range(2):
        await second.send(Invite(callsid=temp_sid(index), sdp=offer, twilio={}))
    await second.wait_for("answer")
    assert error_code(await second.wait_for("hangup")) == 31206  # 4 per account
    await other.send(Invite(callsid=temp_sid(9), sdp=offer, twilio={}))
    await other.wait_for("answer")  # another account has its own budget
    assert len(shared.calls.calls) == 5

    ended = [await first.wait_for("hangup", count=n, timeout=20) for n in (2, 3, 4)]
    answered = {m.callsid for m in first.of_type("answer") if isinstance(m, Answer)}
    assert {m.callsid for m in ended if isinstance(m, Hangup)} == answered
    assert {error_code(m) for m in ended} == {53405}
    await eventually(lambda: shared.calls.calls == [], timeout=20)
    assert {r["reason"] for r in shared.calls.records} == {"media did not connect"}


# -- accounts and tokens --------------------------------------------------------------------
async def test_accounts_are_isolated(shared: Gateway, clients: StartClient, tokens: Tokens) -> None:
    """Old gateway: presence by identity alone, so A's ``client:bob`` rang B's bob too."""
    bob = await registered(clients, tokens("bob"))
    other_bob = await registered(clients, tokens("bob", other=True))
    other_alice = await clients(tokens("alice", other=True))
    alice = await clients(tokens("alice"))
    offer = await dead_offer()

    await alice.send(Invite(callsid=temp_sid(1), sdp=offer, twilio={"params": "To=client%3Abob"}))
    await alice.wait_for("ringing")
    assert len(bob.of_type("invite")) == 1 and other_bob.of_type("invite") == []
    await alice.send(Hangup(callsid=temp_sid(1)))
    await bob.wait_for("cancel")

    await other_bob.send(Register.presence(False))
    await other_bob.wait_for("offline")
    await other_alice.send(
        Invite(callsid=temp_sid(2), sdp=offer, twilio={"params": "To=client%3Abob"})
    )
    unreachable = await other_alice.wait_for("hangup")
    assert error_code(unreachable) == 31480  # dev's bob is not in this account
    assert len(bob.of_type("invite")) == 1


async def test_reconnect_tokens_only_work_for_their_owner(
    shared: Gateway, clients: StartClient, tokens: Tokens
) -> None:
    """Old gateway: a leaked reconnect token let mallory take over alice's live call."""
    alice = await clients(tokens("alice"))
    callsid = await place_echo_call(alice)
    answer = alice.of_type("answer")[0]
    assert isinstance(answer, Answer) and answer.reconnect
    takeover = Invite(
        callsid=callsid, sdp=await dead_offer(), reconnect=answer.reconnect, twilio={}
    )
    for thief in (tokens("mallory"), tokens("alice", other=True)):
        client = await clients(thief)
        await client.send(takeover)
        assert error_code(await client.wait_for("hangup")) == 31107
    ((call, leg),) = {(c, c.caller) for c in shared.calls.calls}
    assert leg.conn.identity == "alice" and leg.conn.account_sid == call.account_sid

    again = await clients(tokens("alice"))
    await again.send(takeover)
    moved = await again.wait_for("answer")
    assert isinstance(moved, Answer) and moved.callsid == callsid  # the owner still can


async def test_a_token_without_outgoing_grant_cannot_call(
    clients: StartClient, tokens: Tokens
) -> None:
    client = await clients(tokens("alice", outgoing_application_sid=None))
    await client.send(Invite(callsid=temp_sid(1), sdp=await dead_offer(), twilio={}))
    refused = await client.wait_for("hangup")
    assert isinstance(refused, Hangup) and refused.callsid == temp_sid(1)
    assert error_code(refused) == 31201
    assert client.of_type("answer") == []


async def test_an_expired_token_authorizes_nothing_new_until_updated(
    shared: Gateway, clients: StartClient, tokens: Tokens
) -> None:
    """Old gateway: after 31205 the socket could still call, register and be rung."""
    bob = await registered(clients, tokens("bob", ttl=2))
    caller = await clients(tokens("alice"))
    assert error_code(await bob.wait_for("error", timeout=6)) == 31205
    await bob.wait_for("offline")
    offer = await dead_offer()

    await bob.send(Register.presence(True))
    assert error_code(await bob.wait_for("error", count=2)) == 31205
    await bob.send(Invite(callsid=temp_sid(1), sdp=offer, twilio={}))
    assert error_code(await bob.wait_for("hangup")) == 31205
    await caller.send(Invite(callsid=temp_sid(2), sdp=offer, twilio={"params": "To=client%3Abob"}))
    assert error_code(await caller.wait_for("hangup")) == 31480
    assert bob.of_type("invite") == [] and len(bob.of_type("ready")) == 1

    await bob.send(Listen(token=tokens("bob")))
    await bob.wait_for("connected", count=2)
    await bob.send(Register.presence(True))
    await bob.wait_for("ready", count=2)


async def test_a_failed_relisten_closes_the_socket(
    shared: Gateway, clients: StartClient, tokens: Tokens
) -> None:
    """Old gateway: a forged re-``listen`` got 31202 and the socket kept alice's identity."""
    alice = await registered(clients, tokens("alice"))
    forged = mint_token(
        ApiKey(
            shared.accounts.default_key().sid, "guessed-secret-0123456789abcdef!", "AC" + "0" * 32
        ),
        "mallory",
    )
    await alice.send(Listen(token=forged))
    assert error_code(await alice.wait_for("error")) == 31202
    await alice.wait_for("close")
    assert await alice.closed(5) == 1008
    await eventually(lambda: not shared.presence.addresses())


async def test_an_exp_no_float_can_hold_is_an_invalid_token(
    shared: Gateway, clients: StartClient
) -> None:
    """Old gateway: ``exp: 10**400`` raised OverflowError in the handler (socket closed 1011)."""
    key = shared.accounts.default_key()
    claims = {"iss": key.sid, "sub": key.account_sid, "exp": 10**400, "grants": {"identity": "a"}}
    token = jwt.encode(claims, key.secret, algorithm="HS256")
    client = await clients(None)
    await client.send(Listen(token=token))
    assert error_code(await client.wait_for("error")) == 31204
    assert await client.closed(5) == 1008  # closed by policy, not by a crash (1011)
