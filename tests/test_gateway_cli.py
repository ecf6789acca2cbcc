"""Issue 9, gateway half: ``softphone gateway`` and ``softphone token`` are safe by default.

Certificates are generated where ``--cert/--key`` point, every start says how to
trust them, bad input is one line on stderr (never a traceback), a gateway with the
public development secret refuses to listen beyond loopback, and ``softphone token``
refuses the identities the gateway would refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from benchmarks.wire import free_port
from softphone.cli import main
from softphone.gateway import exposure
from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context


async def _start_lines(*args: str, until: str, env: dict[str, str]) -> tuple[list[str], str]:
    """Run ``softphone gateway ARGS`` until a stdout line contains ``until``; (stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "softphone.cli",
        "gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any(until in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        _, err = await proc.communicate()
    return lines, err.decode()


async def test_missing_cert_and_key_are_generated_where_given_and_trust_is_explained(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "new" / "cert.pem", tmp_path / "new" / "key.pem"
    port = free_port()
    args = ("--port", str(port), "--cert", str(cert), "--key", str(key))
    env = {"SOFTPHONE_HOME": str(tmp_path / "home")}
    lines, err = await _start_lines(*args, until="browsers:", env=env)
    assert cert.exists() and key.exists(), err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "generating a self-signed certificate" in err and "Traceback" not in err
    out = "\n".join(lines)
    assert f"certificate: {cert.resolve()}" in out
    assert f"SSL_CERT_FILE={cert.resolve()}" in out
    assert f"client_ssl_context('{cert.resolve()}')" in out
    assert f"https://127.0.0.1:{port}/" in out  # where a browser accepts it

    # the next start reuses the pair and says the same; and the pair really serves wss
    lines, err = await _start_lines(*args, until="browsers:", env=env)
    assert "generating" not in err and f"certificate: {cert.resolve()}" in "\n".join(lines)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "softphone.cli", "gateway", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)
        ssl_context = client_ssl_context(str(cert))
        async with connect(f"wss://127.0.0.1:{port}/signal", ssl=ssl_context) as ws:
            assert ws.protocol.state.name == "OPEN"
    finally:
        proc.terminate()
        await proc.wait()


def _one_line_error(capsys: pytest.CaptureFixture[str], prefix: str) -> str:
    """The error: one line starting with ``prefix``, last on stderr; no traceback, no stdout.

    (A "generating a self-signed certificate" notice may come before it.)
    """
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(prefix)]
    assert errors == lines[-1:] and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return errors[0]


@pytest.mark.parametrize("case", ["only cert", "key missing", "not PEM", "unwritable"])
def test_bad_cert_options_are_one_line_errors(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = ["gateway", "--port", str(free_port()), "--cert", str(cert), "--key", str(key)]
    if case == "only cert":
        args = args[:5]
    elif case == "key missing":
        cert.write_text("-----BEGIN CERTIFICATE-----\n")
    elif case == "not PEM":
        cert.write_text("hello")
        key.write_text("world")
    else:
        blocker = tmp_path / "file"
        blocker.write_text("")
        args[-3], args[-1] = str(blocker / "cert.pem"), str(blocker / "key.pem")
    assert main(args) == 2
    _one_line_error(capsys, "softphone gateway: ")


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::"])
def test_public_bind_with_the_dev_secret_is_refused(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOFTPHONE_DEV_SECRET", raising=False)
    for name in ("SOFTPHONE_ACCOUNT_SID", "SOFTPHONE_API_KEY_SID", "SOFTPHONE_API_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["gateway", "--no-tls", "--host", host, "--port", str(free_port())]) == 2
    line = _one_line_error(capsys, "softphone gateway: refusing to serve")
    assert "--allow-public-dev-account" in line


async def test_gateway_itself_refuses_a_public_bind_with_the_dev_secret() -> None:
    gateway = Gateway(AccountStore.dev({}), GatewayConfig(host="0.0.0.0"))
    with pytest.raises(exposure.ExposureError):
        await gateway.start()  # refused before binding anything
    with pytest.raises(RuntimeError):
        _ = gateway.port


def test_exposure_rules() -> None:
    public, private = AccountStore.dev({}), AccountStore.dev({"SOFTPHONE_DEV_SECRET": "x" * 40})
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert exposure.is_loopback(host)
        assert exposure.check(host, public, allow_public_secret=False) is False
    for host in ("0.0.0.0", "", "::", "192.0.2.7"):
        assert not exposure.is_loopback(host)
        assert exposure.check(host, private, allow_public_secret=False) is False
        assert exposure.check(host, public, allow_public_secret=True) is True  # warn loudly
        with pytest.raises(exposure.ExposureError):
            exposure.check(host, public, allow_public_secret=False)


@pytest.mark.parametrize("identity", ["alice smith", "a" * 122, "alice@example.com", "ålice"])
def test_token_refuses_what_the_gateway_refuses(
    identity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--identity", identity]) == 2
    _one_line_error(capsys, "softphone token: ")


def test_token_for_an_account_without_application_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "accounts.json"
    account = {"sid": "AC" + "1" * 32, "keys": [{"sid": "SK" + "1" * 32, "secret": "s" * 40}]}
    config.write_text(json.dumps({"accounts": [account]}))
    assert main(["token", "--identity", "A_9" * 40 + "z", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count(".") == 2  # a JWT
    assert "not place them" in captured.err
