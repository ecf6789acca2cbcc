"""Shared fixtures: a real gateway on 127.0.0.1, tokens for it, Devices that clean up.

Media fixtures (loopback ICE host addresses) live in ``fixtures_media.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from softphone.core.device import Device
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import generate_self_signed
from softphone.gateway.tokens import mint_token

pytest_plugins = ["fixtures_media", "fixtures_turn", "pure_guard"]

# A Device left without audio options uses the machine's sound card, as a browser does;
# tests must not open a developer's microphone and speakers, so none does unless it
# asks (tests/test_real_devices_default.py). Subprocesses inherit this.
os.environ.setdefault("SOFTPHONE_REAL_DEVICES", "0")

TokenFactory = Callable[..., str]


@pytest.fixture
def accounts() -> AccountStore:
    """The gateway's development account."""
    return AccountStore.dev()


@pytest.fixture
def make_token(accounts: AccountStore) -> TokenFactory:
    """Mint dev-account tokens: ``make_token("alice", ttl=60)``."""

    def factory(identity: str, ttl: int = 3600, **kwargs: Any) -> str:
        kwargs.setdefault("outgoing_application_sid", DEV_APPLICATION_SID)
        return mint_token(accounts.default_key(), identity, ttl=ttl, **kwargs)

    return factory


@pytest.fixture
async def gateway(accounts: AccountStore, loopback_media: None) -> AsyncIterator[Gateway]:
    """A real gateway (plain ws) on 127.0.0.1 with a free port."""
    gw = Gateway(accounts, GatewayConfig(port=0, heartbeat_interval_s=1.0))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def make_device(
    gateway: Gateway, make_token: TokenFactory
) -> AsyncIterator[Callable[..., Device]]:
    """Devices pointed at the ``gateway`` fixture; destroyed at teardown."""
    devices: list[Device] = []

    def factory(identity: str, token: str | None = None, **options: Any) -> Device:
        options.setdefault("chunderw", gateway.url)
        device = Device(token or make_token(identity), options)
        devices.append(device)
        return device

    yield factory
    for device in devices:
        await device.destroy()


@pytest.fixture
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Everything asyncio reports to the loop's exception handler during the test
    ("Task exception was never retrieved", "Exception in callback" …)."""
    loop = asyncio.get_event_loop()
    recorded: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: recorded.append(context))
    yield recorded
    loop.set_exception_handler(previous)


@pytest.fixture
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost."""
    cert, key = tmp_path / "gateway.pem", tmp_path / "gateway.key"
    generate_self_signed(cert, key)
    return cert, key
