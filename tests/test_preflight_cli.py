"""``softphone preflight``: one echo call that says which network path the media took.

Run as a user runs it (a child process), against an embedded gateway, and against a
``softphone gateway`` child with a real coturn in relay-only mode, reachable and not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fixtures_turn import Coturn

from benchmarks.wire import GatewayChild


def preflight(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "softphone.cli", "preflight", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_preflight_on_the_embedded_gateway() -> None:
    result = preflight()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ICE candidates gathered: host 1" in out
    assert "media path: local host 127.0.0.1:" in out and "-> remote host 127.0.0.1:" in out
    assert "audio: the echoed tone came back" in out
    assert out.rstrip().endswith("result: OK")


async def test_preflight_relay_only_through_coturn(
    tmp_path: Path, make_token: Callable[..., str], coturn: Coturn
) -> None:
    async with GatewayChild(tmp_path / "gateway.log") as gateway:
        servers = json.dumps([coturn.ice_server("udp")])
        result = preflight(
            "--url", gateway.url, "--token", make_token("pre"), "--relay", "--ice-servers", servers
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ICE candidates gathered: relay 1" in out
    assert f"TURN {coturn.url('udp')}: relay over udp" in out
    assert f"media path: local relay {coturn.host}:" in out
    assert "over udp to the TURN server" in out
    assert out.rstrip().endswith("result: OK")


async def test_preflight_says_when_the_turn_server_is_blocked(
    tmp_path: Path, make_token: Callable[..., str], coturn: Coturn
) -> None:
    coturn.block_udp()
    async with GatewayChild(tmp_path / "gateway.log") as gateway:
        servers = json.dumps({"ice_servers": [coturn.ice_server("udp")]})  # Tokens.json shape
        result = preflight(
            "--url", gateway.url, "--token", make_token("pre"), "--relay", "--ice-servers",
            servers, "--listen", "2",
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"TURN {coturn.url('udp')}: no answer in time (blocked?)" in out
    assert "media path" not in out
    assert out.rstrip().endswith("result: FAILED")


def test_preflight_usage_errors_are_one_line() -> None:
    result = preflight("--url", "ws://127.0.0.1:9/signal")
    assert result.returncode == 2
    assert result.stderr.strip() == ("softphone preflight: give both --url and --token, or neither")
    result = preflight("--ice-servers", "{not json")
    assert result.returncode == 2 and result.stderr.startswith("softphone preflight: ")
    assert "Traceback" not in result.stderr
