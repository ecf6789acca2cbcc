"""The Network Traversal Service: TURN credentials minted as coturn checks them, and the
``Tokens.json`` REST resource through Twilio's official helper library."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from softphone.gateway.accounts import DEV_ACCOUNT_SID, DEV_API_KEY_SID, AccountStore
from softphone.gateway.rest_api import RestApi
from softphone.gateway.traversal import (
    TraversalConfig,
    check_ttl,
    token_resource,
    turn_credential,
)

SECRET = "turn-shared-secret"
CONFIG = TraversalConfig(
    stun_urls=("stun:127.0.0.1:3478",),
    turn_urls=("turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"),
    shared_secret=SECRET,
)


@pytest.mark.pure
def test_turn_credential_is_the_turn_rest_api_scheme() -> None:
    credential = turn_credential(SECRET, DEV_ACCOUNT_SID, ttl_s=600, now=1_000_000.7)
    assert credential.username == f"1000600:{DEV_ACCOUNT_SID}"
    expected = hmac.new(SECRET.encode(), credential.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential.password) == expected
    assert credential.expires_at == 1_000_600


@pytest.mark.pure
def test_ttl_bounds() -> None:
    assert check_ttl(None) == 86400
    assert check_ttl("60") == 60
    for bad in ("0", "86401", "-5", "ten", "1.5"):
        with pytest.raises(ValueError):
            check_ttl(bad)


@pytest.mark.pure
def test_config_rejects_bad_urls_and_a_missing_secret() -> None:
    with pytest.raises(ValueError, match="stun:"):
        TraversalConfig(stun_urls=("turn:x",))
    with pytest.raises(ValueError, match="turn:"):
        TraversalConfig(turn_urls=("stun:x",), shared_secret="s")
    with pytest.raises(ValueError, match="shared secret"):
        TraversalConfig(turn_urls=("turn:127.0.0.1:3478",))


@pytest.mark.pure
def test_token_resource_has_twilios_fields() -> None:
    body = token_resource(CONFIG, DEV_ACCOUNT_SID, ttl_s=3600, now=1_700_000_000)
    assert set(body) == {
        "account_sid",
        "date_created",
        "date_updated",
        "ice_servers",
        "password",
        "ttl",
        "username",
    }
    assert body["ttl"] == "3600"
    assert body["date_created"].endswith("+0000")
    stun, turn_udp, turns_tcp = body["ice_servers"]
    assert stun == {"url": "stun:127.0.0.1:3478", "urls": "stun:127.0.0.1:3478"}
    for server in (turn_udp, turns_tcp):
        assert server["username"] == body["username"] == f"1700003600:{DEV_ACCOUNT_SID}"
        assert server["credential"] == body["password"]


@pytest.fixture
async def rest_api() -> AsyncIterator[RestApi]:
    api = await RestApi(AccountStore.dev(), CONFIG).start("127.0.0.1", 0)
    yield api
    await api.stop()


def _client(api: RestApi, key_sid: str, secret: str) -> Client:
    client = Client(key_sid, secret, DEV_ACCOUNT_SID)
    client.api.base_url = api.url
    return client


async def test_official_helper_creates_a_token(rest_api: RestApi) -> None:
    secret = AccountStore.dev().default_key().secret
    client = _client(rest_api, DEV_API_KEY_SID, secret)
    token = await asyncio.to_thread(client.tokens.create, ttl=120)
    assert token.account_sid == DEV_ACCOUNT_SID
    assert token.ttl == "120"
    assert token.username and token.username.endswith(f":{DEV_ACCOUNT_SID}")
    urls = [server["urls"] for server in token.ice_servers]  # type: ignore[index]
    assert urls == ["stun:127.0.0.1:3478", *CONFIG.turn_urls]
    expiry = int(token.username.split(":")[0])
    expected = hmac.new(SECRET.encode(), token.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(token.password or "") == expected
    assert 100 <= expiry - int(time.time()) <= 121


async def test_wrong_secret_or_other_account_is_refused(rest_api: RestApi) -> None:
    client = _client(rest_api, DEV_API_KEY_SID, "not-the-secret")
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(client.tokens.create)
    assert info.value.status == 401
    assert info.value.code == 20003
    secret = AccountStore.dev().default_key().secret
    other = Client(DEV_API_KEY_SID, secret, "AC" + "f" * 32)
    other.api.base_url = rest_api.url
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(other.tokens.create)
    assert info.value.status == 401


async def test_bad_ttl_is_a_400(rest_api: RestApi) -> None:
    secret = AccountStore.dev().default_key().secret
    client = _client(rest_api, DEV_API_KEY_SID, secret)
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(client.tokens.create, ttl=999999)
    assert info.value.status == 400
    assert "Ttl" in str(info.value.msg)


async def test_no_servers_configured_is_a_503() -> None:
    api = await RestApi(AccountStore.dev(), TraversalConfig()).start("127.0.0.1", 0)
    try:
        secret = AccountStore.dev().default_key().secret
        client = _client(api, DEV_API_KEY_SID, secret)
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(client.tokens.create)
        assert info.value.status == 503
    finally:
        await api.stop()
