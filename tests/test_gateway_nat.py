"""Issue 17, gateway side: a gateway behind NAT and firewalls, run as users run it.

Each test starts ``softphone gateway`` in its own process (its media hooks are
process-wide) and calls it from a Device in this process:

* ``--media-advertise`` behind a 1:1 NAT (iptables DNAT from a second loopback
  address to the bind address): the SDP carries only the outside address, and audio
  flows through the NAT; ``--rtp-ports`` keeps every media port in the range;
* a leg that cannot gather any candidate (the one-port range is taken) ends the call
  at once with 53405 instead of a silent "open" call;
* the Network Traversal Service: ``client.tokens.create()`` of Twilio's official
  helper against ``--api-port`` returns credentials that carry a relay-only call
  through a real coturn;
* ``--media-relay``: the gateway's own legs gather relay candidates on coturn.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from calltools import recent
from fixtures_turn import SHARED_SECRET, Coturn, require_or_skip
from recorders import EventLog
from twilio.rest import Client

from benchmarks.wire import GatewayChild, free_port
from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_ACCOUNT_SID, DEV_API_KEY_SID, AccountStore

TONE_HZ = 700.0
CANDIDATE = re.compile(r"a=candidate:\S+ \d+ (\w+) \d+ (\S+) (\d+) typ (\w+)")


def candidates(sdp: str | None) -> list[tuple[str, int, str]]:
    """``(address, port, type)`` of every candidate line."""
    return [(m.group(2), int(m.group(3)), m.group(4)) for m in CANDIDATE.finditer(sdp or "")]


def rtp_range(size: int) -> tuple[int, int]:
    """A random port range below Linux's ephemeral ports (nothing else binds there)."""
    low = random.SystemRandom().randrange(30000, 32000, size)
    return low, low + size - 1


@pytest.fixture
def nat() -> Iterator[tuple[str, tuple[int, int]]]:
    """A 1:1 NAT on loopback for a media port range: ``(outside address, (low, high))``.

    UDP to the outside address is DNAT-ed to 127.0.0.1, and UDP leaving 127.0.0.1 from
    the range is SNAT-ed to the outside address, so the gateway behind it is seen at
    the outside address whichever side speaks first.
    """
    rng = random.SystemRandom()
    outside = f"127.{rng.randint(64, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
    low, high = rtp_range(20)
    rules = [
        ["OUTPUT", "-d", outside, "-p", "udp", "-j", "DNAT", "--to-destination", "127.0.0.1"],
        ["POSTROUTING", "-s", "127.0.0.1", "-p", "udp", "--sport", f"{low}:{high}",
         "-j", "SNAT", "--to-source", outside],
    ]  # fmt: skip
    iptables = shutil.which("iptables")
    require_or_skip("iptables", iptables is not None, "apt-get install iptables")
    assert iptables is not None
    added: list[list[str]] = []
    try:
        for rule in rules:
            result = subprocess.run([iptables, "-w", "-t", "nat", "-A", *rule], capture_output=True)
            require_or_skip(
                "iptables (root with CAP_NET_ADMIN)",
                result.returncode == 0,
                result.stderr.decode().strip(),
            )
            added.append(rule)
        yield outside, (low, high)
    finally:
        for rule in added:
            subprocess.run([iptables, "-w", "-t", "nat", "-D", *rule], capture_output=True)


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start ``softphone gateway --no-tls`` children with extra flags; stopped at teardown."""
    children: list[GatewayChild] = []

    async def start(*args: str) -> GatewayChild:
        child = GatewayChild(tmp_path / f"gateway-{len(children)}.log", *args)
        children.append(child)
        return await child.start()

    yield start
    for child in children:
        child.stop()


async def echo_call(device: Device) -> tuple[Call, MemorySink]:
    """Call ``echo``; returns the open call and what the device hears."""
    call = await device.connect(params={"To": "echo"})
    log = EventLog(call, "accept", "error", "disconnect")
    await log.wait_for("accept", timeout=20)
    heard = MemorySink()
    call.get_remote_stream().add_sink(heard)
    return call, heard


async def hears_tone(heard: MemorySink, hz: float = TONE_HZ) -> None:
    """Fresh audio with the tone arrives within 10 s."""
    for _ in range(20):
        if detect_tone(await recent(heard, 0.5), hz):
            return
    raise AssertionError(f"no {hz} Hz tone heard")


async def selected_pair(call: Call) -> dict[str, Any]:
    assert call.peer_connection is not None
    for _ in range(50):
        pair = (await call.peer_connection.get_stats())["selectedCandidatePair"]
        if pair:
            return dict(pair)
        await asyncio.sleep(0.1)
    raise AssertionError("no selected candidate pair")


async def test_gateway_advertises_its_outside_address_and_keeps_to_its_port_range(
    start_gateway: Callable[..., Any],
    make_token: Callable[..., str],
    loopback_media: None,
    nat: tuple[str, tuple[int, int]],
) -> None:
    nat_address, (low, high) = nat
    gateway = await start_gateway(
        "--media-bind",
        "127.0.0.1",
        "--media-advertise",
        nat_address,
        "--rtp-ports",
        f"{low}-{high}",
    )
    device = Device(
        make_token("alice"), chunderw=gateway.url, file_input_stream=ToneSource([TONE_HZ])
    )
    try:
        call, heard = await echo_call(device)
        assert call.peer_connection is not None
        offered = candidates(call.peer_connection.remote_sdp)
        assert offered, "the gateway's answer has no candidate"
        for address, port, kind in offered:
            assert (address, kind) == (nat_address, "host")  # never the bind address
            assert low <= port <= high
        await hears_tone(heard)  # the echo crossed the NAT both ways
        pair = await selected_pair(call)
        assert pair["remoteAddress"] == nat_address
    finally:
        await device.destroy()


async def test_a_leg_without_candidates_ends_the_call_at_once(
    start_gateway: Callable[..., Any], make_token: Callable[..., str], loopback_media: None
) -> None:
    low, _ = rtp_range(1)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", low))
    try:
        gateway = await start_gateway("--media-bind", "127.0.0.1", "--rtp-ports", f"{low}-{low}")
        device = Device(
            make_token("alice"), chunderw=gateway.url, file_input_stream=ToneSource([TONE_HZ])
        )
        try:
            call = await device.connect(params={"To": "echo"})
            log = EventLog(call, "accept", "error", "disconnect")
            (error,) = await log.wait_for("error", timeout=10)
            assert error.code == 53405
            await log.wait_for("disconnect", timeout=5)
            assert log.count("accept") == 0
            assert "gathered no ICE candidate" in gateway.log_text()
        finally:
            await device.destroy()
    finally:
        taken.close()


async def test_tokens_endpoint_credentials_carry_a_relay_only_call_through_coturn(
    start_gateway: Callable[..., Any],
    make_token: Callable[..., str],
    loopback_media: None,
    coturn: Coturn,
) -> None:
    api_port = free_port()
    gateway = await start_gateway(
        "--api-port", str(api_port),
        "--turn", coturn.url("udp"),
        "--turn", coturn.url("tcp"),
        "--turn-secret", SHARED_SECRET,
    )  # fmt: skip
    secret = AccountStore.dev().default_key().secret
    client = Client(DEV_API_KEY_SID, secret, DEV_ACCOUNT_SID)
    client.api.base_url = f"http://127.0.0.1:{api_port}"
    token = await asyncio.to_thread(client.tokens.create, ttl=600)
    servers = token.ice_servers
    assert [s["urls"] for s in servers] == [coturn.url("udp"), coturn.url("tcp")]  # type: ignore[index]
    device = Device(
        make_token("alice"),
        chunderw=gateway.url,
        file_input_stream=ToneSource([TONE_HZ]),
        rtc_configuration={"iceServers": servers, "iceTransportPolicy": "relay"},
    )
    try:
        call, heard = await echo_call(device)
        assert call.peer_connection is not None
        assert {kind for _, _, kind in candidates(call.peer_connection.local_sdp)} == {"relay"}
        await hears_tone(heard)
        pair = await selected_pair(call)
        assert pair["localCandidateType"] == "relay"
        call.disconnect()

        def relayed() -> list[Any]:  # coturn logs each allocation's counters when it closes
            return [u for u in coturn.peer_usage() if u.packets_from_peer and u.packets_to_peer]

        for _ in range(100):
            if relayed():
                break
            await asyncio.sleep(0.1)
        (usage,) = relayed()
        assert usage.username == token.username  # coturn accepted the minted credential
        assert usage.packets_from_peer >= 25 and usage.packets_to_peer >= 25  # 0.5 s each way
    finally:
        await device.destroy()


async def test_gateway_legs_relay_through_turn(
    start_gateway: Callable[..., Any],
    make_token: Callable[..., str],
    loopback_media: None,
    coturn: Coturn,
) -> None:
    gateway = await start_gateway(
        "--turn", coturn.url("udp"), "--turn-secret", SHARED_SECRET, "--media-relay"
    )
    device = Device(
        make_token("alice"), chunderw=gateway.url, file_input_stream=ToneSource([TONE_HZ])
    )
    try:
        call, heard = await echo_call(device)
        assert call.peer_connection is not None
        kinds = {kind for _, _, kind in candidates(call.peer_connection.remote_sdp)}
        assert "relay" in kinds  # the gateway's answer offers its coturn relay too
        await hears_tone(heard)
    finally:
        await device.destroy()


def test_bad_media_flags_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from softphone.cli import main

    port = str(free_port())
    for args, words in [
        (["--rtp-ports", "20000"], "port range must look like 10000-20000"),
        (["--rtp-ports", "30000-20000"], "RTP port range"),
        (["--media-advertise", "not-an-ip"], "advertised_address must be an IP address"),
        (["--media-relay"], "--media-relay needs --turn"),
        (["--turn", "turn:127.0.0.1:3478"], "shared secret"),
        (["--stun", "http://x"], "stun:"),
    ]:
        assert main(["gateway", "--no-tls", "--port", port, *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("softphone gateway: ") and words in err, (args, err)
        assert "Traceback" not in err
