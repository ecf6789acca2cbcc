"""Issue 2 on a real gateway: register, unregister, tokens, restarts, edges, bad tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from recorders import EventLog, eventually

from softphone.core.device import Device
from softphone.core.errors import InvalidStateError, TwilioError
from softphone.gateway.accounts import DEV_ACCOUNT_SID, AccountStore, ApiKey
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token


async def test_register_then_unregister(
    make_device: Callable[..., Device], gateway: Gateway
) -> None:
    device = make_device("alice")
    log = EventLog(device, "registering", "registered", "unregistered", "error")
    assert device.state == "unregistered" and device.stream is None  # lazy (chk 7, 10)
    await device.register()
    assert device.state == "registered"
    assert log.names() == ["registering", "registered"]
    assert device.identity == "alice"
    assert device.edge == "loopback" and device.home == "loopback"
    conn = next(iter(gateway.connections))
    assert gateway.presence.is_registered(DEV_ACCOUNT_SID, "alice", conn)

    await device.unregister()
    assert device.state == "unregistered"
    assert log.names() == ["registering", "registered", "unregistered"]
    assert not gateway.presence.is_registered(DEV_ACCOUNT_SID, "alice", conn)
    with pytest.raises(InvalidStateError):
        await device.unregister()


async def test_register_twice_rejects(make_device: Callable[..., Device]) -> None:
    device = make_device("alice")
    await device.register()
    with pytest.raises(InvalidStateError):
        await device.register()


async def test_several_devices_share_an_identity(
    make_device: Callable[..., Device], gateway: Gateway
) -> None:
    first, second = make_device("bob"), make_device("bob")
    await asyncio.gather(first.register(), second.register())
    assert len(gateway.presence.connections(DEV_ACCOUNT_SID, "bob")) == 2
    await first.unregister()
    assert len(gateway.presence.connections(DEV_ACCOUNT_SID, "bob")) == 1


async def test_token_will_expire_then_update_token(
    make_device: Callable[..., Device], make_token: Callable[..., str], gateway: Gateway
) -> None:
    short = make_token("alice", ttl=12)
    device = make_device("alice", token=short, token_refresh_ms=11_000)
    log = EventLog(device, "tokenWillExpire", "error")
    fresh = make_token("alice", ttl=3600)
    device.on("tokenWillExpire", lambda d: d.update_token(fresh))
    await device.register()
    (arg,) = await log.wait_for("tokenWillExpire", timeout=5)
    assert arg is device
    assert device.token == fresh
    conn = next(iter(gateway.connections))
    await eventually(lambda: conn.token is not None and conn.token.ttl(time.time()) > 3000)
    assert device.state == "registered"
    assert log.count("error") == 0


async def test_gateway_expires_a_token_that_was_not_updated(
    make_device: Callable[..., Device], make_token: Callable[..., str]
) -> None:
    device = make_device("alice", token=make_token("alice", ttl=2))
    log = EventLog(device, "error", "unregistered")
    await device.register()
    (error,) = await log.wait_for("error", timeout=6)
    assert error.code == 20104  # the gateway's 31205, as the JS Device maps it
    await log.wait_for("unregistered")


async def test_reregisters_after_gateway_restart(
    accounts: AccountStore, make_token: Callable[..., str], loopback_media: None
) -> None:
    first = await Gateway(accounts, GatewayConfig(port=0)).start()
    port = first.port
    device = Device(make_token("alice"), chunderw=first.url)
    log = EventLog(device, "registered", "unregistered", "error")
    try:
        await device.register()
        await first.stop()
        await log.wait_for("unregistered")
        second = await Gateway(accounts, GatewayConfig(port=port)).start()
        try:
            await log.wait_for("registered", count=2, timeout=15)
            assert device.state == "registered"
            assert second.presence.connections(DEV_ACCOUNT_SID, "alice")
        finally:
            await device.destroy()
            await second.stop()
    finally:
        await first.stop()


async def test_update_token_with_a_new_identity_moves_presence(
    make_device: Callable[..., Device], make_token: Callable[..., str], gateway: Gateway
) -> None:
    device = make_device("alice")
    await device.register()
    device.update_token(make_token("carol"))
    await eventually(lambda: device.identity == "carol")
    assert gateway.presence.connections(DEV_ACCOUNT_SID, "carol")
    assert not gateway.presence.connections(DEV_ACCOUNT_SID, "alice")


async def test_destroy(make_device: Callable[..., Device]) -> None:
    device = make_device("alice")
    log = EventLog(device, "unregistered", "destroyed")
    await device.register()
    await device.destroy()
    assert device.state == "destroyed"
    assert log.names() == ["unregistered", "destroyed"]
    with pytest.raises(InvalidStateError):
        await device.register()
    with pytest.raises(InvalidStateError):
        device.update_token("x")
    await device.destroy()  # idempotent


def _bad_tokens(accounts: AccountStore) -> dict[str, tuple[str, int, int]]:
    """name -> (token, Device error code with precision off, with precision on)."""
    key = accounts.default_key()
    now = time.time()
    wrong_secret = ApiKey(sid=key.sid, secret="not-the-secret-" * 3, account_sid=key.account_sid)
    unknown_key = ApiKey(sid="SK" + "f" * 32, secret=key.secret, account_sid=key.account_sid)
    return {
        "garbage": ("not-a-jwt", 20101, 20101),
        "wrong signature": (mint_token(wrong_secret, "alice"), 53000, 31202),
        "expired": (mint_token(key, "alice", ttl=60, now=now - 3600), 20104, 20104),
        "lifetime over 24 h": (mint_token(key, "alice", ttl=2 * 86400), 53000, 31207),
        "bad identity": (mint_token(key, "alice smith"), 53000, 31105),
        "unknown key": (mint_token(unknown_key, "alice"), 53000, 31203),
    }


@pytest.mark.parametrize("precise", [False, True])
@pytest.mark.parametrize(
    "case",
    ["garbage", "wrong signature", "expired", "lifetime over 24 h", "bad identity", "unknown key"],
)
async def test_bad_tokens_get_their_codes(
    case: str, precise: bool, accounts: AccountStore, make_device: Callable[..., Device]
) -> None:
    token, plain_code, precise_code = _bad_tokens(accounts)[case]
    device = make_device("alice", token=token, enable_improved_signaling_error_precision=precise)
    log = EventLog(device, "error", "registered")
    with pytest.raises(TwilioError) as rejected:
        await asyncio.wait_for(device.register(), 5)
    (error,) = log.args("error")[0]
    assert isinstance(error, TwilioError)
    assert rejected.value is error  # register() rejects with the token's own error
    assert error.code == (precise_code if precise else plain_code)
    gateway_text = error.original_error["message"]  # type: ignore[index]
    assert gateway_text and gateway_text in error.message  # the precise cause, in plain words
    if error.code != precise_code:
        assert f"code {precise_code}" in error.message
    assert log.count("registered") == 0
    assert device.state == "unregistered"
    assert device.stream is None  # the gateway's `close` stops the retry loop


async def test_token_from_the_official_twilio_helper_registers(
    accounts: AccountStore, make_device: Callable[..., Device]
) -> None:
    from twilio.jwt.access_token import AccessToken
    from twilio.jwt.access_token.grants import VoiceGrant

    key = accounts.default_key()
    token = AccessToken(key.account_sid, key.sid, key.secret, identity="dave", ttl=600)
    token.add_grant(VoiceGrant(incoming_allow=True, outgoing_application_sid="AP" + "0" * 31 + "1"))
    device = make_device("dave", token=token.to_jwt())
    await device.register()
    assert device.identity == "dave"
