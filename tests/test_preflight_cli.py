"""``softphone preflight``: one echo call that says which network path the media took, and how well.

Run as a user runs it (a child process), against an embedded gateway, and against a
``softphone gateway`` child with a real coturn in relay-only mode, reachable and not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fixtures_turn import Coturn
from test_preflight_report import REPORT_KEYS

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
    result = preflight("--seconds", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ICE candidates gathered: host 1" in out
    assert "media path: local host 127.0.0.1:" in out and "-> remote host 127.0.0.1:" in out
    assert "audio: the echoed tone came back" in out
    assert out.rstrip().endswith("result: OK")
    # the PreflightTest: a progress line per sample, timings and the call quality
    lines = out.splitlines()
    assert lines[0] == "sample 1: MOS -"  # the first sample never has a MOS
    assert re.search(r"^sample \d+: MOS 4\.\d\d$", out, re.M), out  # once rtt is known
    assert re.search(r"^signaling: the echo call was answered in \d+ ms$", out, re.M)
    assert re.search(r"^media setup: ICE \d+ ms, DTLS \d+ ms, peer connection \d+ ms$", out, re.M)
    quality = re.search(
        r"^call quality: excellent \(MOS avg (4\.\d\d), .*, (\d+) samples\)$", out, re.M
    )
    assert quality is not None, out
    assert int(quality.group(2)) == sum(line.startswith("sample ") for line in lines)
    assert re.search(r"^jitter: avg [\d.]+, min [\d.]+, max [\d.]+ ms; rtt: avg ", out, re.M)


def test_preflight_json_prints_the_js_report() -> None:
    result = preflight("--json", "--seconds", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # stdout is the JSON alone: progress went to stderr
    assert set(report) == REPORT_KEYS
    assert report["callQuality"] == "excellent" and report["isTurnRequired"] is False
    assert set(report["networkTiming"]) == {"signaling", "peerConnection", "ice", "dtls"}
    assert set(report["stats"]) == {"jitter", "mos", "rtt"}
    assert len(report["samples"]) == result.stderr.count("sample ") >= 2


def test_preflight_json_says_why_a_test_failed() -> None:
    result = preflight("--json", "--url", "ws://127.0.0.1:9/signal", "--token", "x")
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == 53000 and "refused" in error["message"], error


async def test_preflight_relay_only_through_coturn(
    tmp_path: Path, make_token: Callable[..., str], coturn: Coturn
) -> None:
    async with GatewayChild(tmp_path / "gateway.log") as gateway:
        servers = json.dumps([coturn.ice_server("udp")])
        result = preflight(
            "--url", gateway.url, "--token", make_token("pre"), "--relay", "--ice-servers",
            servers, "--seconds", "5",
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ICE candidates gathered: relay 1" in out
    assert f"TURN {coturn.url('udp')}: relay over udp" in out
    assert f"media path: local relay {coturn.host}:" in out
    assert "over udp to the TURN server" in out
    assert re.search(r"^call quality: \w+ \(MOS avg", out, re.M), out
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
    result = preflight("--seconds", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "softphone preflight: --seconds and --listen must be > 0"
    result = preflight("--ice-servers", "{not json")
    assert result.returncode == 2 and result.stderr.startswith("softphone preflight: ")
    assert "Traceback" not in result.stderr
