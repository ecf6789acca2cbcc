"""The ``softphone`` command and the gateway over TLS, as a newcomer would use them."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from softphone.cli import build_parser, main
from softphone.core.device import Device
from softphone.core.errors import TwilioError
from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, generate_self_signed, server_ssl_context


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "gateway", "token"):
        assert command in out


async def test_cli_token_registers_with_the_gateway(
    capsys: pytest.CaptureFixture[str], gateway: Gateway
) -> None:
    assert main(["token", "--identity", "erin", "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip()
    device = Device(token, chunderw=gateway.url)
    try:
        await device.register()
        assert device.identity == "erin"
    finally:
        await device.destroy()


def test_cli_token_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "accounts.json"
    bad.write_text('{"accounts": "nope"}')
    assert main(["token", "--identity", "x", "--config", str(bad)]) == 2
    assert "softphone token:" in capsys.readouterr().err


async def test_device_registers_over_wss_with_a_generated_certificate(
    tmp_path: Path, accounts: AccountStore, make_token: object, loopback_media: None
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key)
    config = GatewayConfig(port=0, ssl_context=server_ssl_context(cert, key))
    gateway = await Gateway(accounts, config).start()
    assert gateway.url.startswith("wss://")
    token = make_token("alice")  # type: ignore[operator]
    trusted = Device(token, chunderw=gateway.host_port, ssl_context=client_ssl_context(str(cert)))
    untrusted = Device(token, chunderw=gateway.host_port, ssl_context=ssl.create_default_context())
    errors: list[int] = []
    untrusted.on("error", lambda e: errors.append(e.code))
    try:
        await trusted.register()  # a bare host:port means wss://, as in the JS SDK
        assert trusted.state == "registered"
        with pytest.raises(TwilioError) as rejected:
            await asyncio.wait_for(untrusted.register(), 15)  # rejects, no longer hangs
        assert rejected.value.code == 53000
        assert "certificate verify failed" in rejected.value.message
        assert "SSL_CERT_FILE" in rejected.value.message  # and says how to fix it
        assert untrusted.state == "unregistered"
        assert 31000 in errors  # TLS failure surfaces as the JS SDK's socket error too
    finally:
        await trusted.destroy()
        await untrusted.destroy()
        await gateway.stop()


def test_demo_makes_a_real_call(tmp_path: Path) -> None:
    """``softphone demo`` end to end in its own process: exit 0 and an OK report."""
    out = tmp_path / "heard.wav"
    result = subprocess.run(
        [sys.executable, "-m", "softphone.cli", "demo", "--seconds", "3", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "SOFTPHONE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: bob heard alice and got the digits" in result.stdout
    assert out.stat().st_size > 48_000 * 2  # more than a second of 16-bit audio
