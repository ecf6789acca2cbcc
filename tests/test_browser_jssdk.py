"""The official JS SDK (``@twilio/voice-sdk`` from npm) in real Chromium, against our gateway.

Product requirement: a browser application using Twilio's own SDK must be able to use the
softphone gateway instead of Twilio: register, place and receive calls with real media, to
and from our Python SDK. Everything here is real: the unmodified ``twilio.min.js`` in
headless Chromium (``tests/browser/runner.mjs`` via playwright-core), the gateway over
``wss`` with a generated certificate, aiortc media on the gateway and in our ``Device``.

Isolation: each test moves its event-loop thread into a private network namespace with
only ``lo`` (:func:`jssdk_browser.private_loopback_netns`) before anything starts, so the
gateway, the Python device, the page server and Chrome share a loopback with nothing behind
it. Chrome offers SDPs without candidates; the gateway learns its address from Chrome's
STUN checks (peer-reflexive), which here can only be 127.0.0.1.

Media evidence, per direction: the browser's fake microphone loops a 1000 Hz WAV and our
Python side must hear 1000 Hz (not its own 1500 Hz); our Python device sends 1500 Hz and
the page must see inbound RTP packets grow, a non-zero audio level and a 1500 Hz peak in a
WebAudio analyser on ``call.getRemoteStream()``.

Skipped, with the reason, when Chromium, node or the npm harness (``npm ci --prefix
tests/browser``) is missing, or when no network namespace can be made; CI sets
``SOFTPHONE_REQUIRE_BROWSER=1`` so that there the same conditions fail instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_server import AppServer
from clustertools import REDIS_SERVER, TTL_S, FailoverProxy, RedisServer
from fixtures_turn import Coturn
from jssdk_browser import (
    BrowserRunner,
    browser_unavailable,
    non_loopback_interfaces,
    private_loopback_netns,
    write_tone_wav,
)
from recorders import EventLog, eventually
from twilio.twiml.voice_response import Gather, VoiceResponse

from benchmarks.wire import free_port
from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_APPLICATION_SID,
    AccountStore,
    Application,
)
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, generate_self_signed, server_ssl_context

_UNAVAILABLE = browser_unavailable()
REQUIRE_ENV = "SOFTPHONE_REQUIRE_BROWSER"
"""Set to 1 (CI does) to make a missing browser setup fail these tests instead of skipping."""

BROWSER_HZ = 1000.0
"""The browser's fake microphone (a looped WAV)."""
PYTHON_HZ = 1500.0
"""Our Python device's microphone."""
BROWSER = "alice"
PYTHON = "bob"
SOUND_NAMES = (
    "incoming",
    "outgoing",
    "disconnect",
    *(f"dtmf{d}" for d in range(10)),
    "dtmfs",
    "dtmfh",
)

TokenFactory = Callable[..., str]
OpenBrowser = Callable[..., Awaitable[BrowserRunner]]


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    """Skip (or, with ``SOFTPHONE_REQUIRE_BROWSER=1``, fail) when the browser can't run."""
    if _UNAVAILABLE is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the browser tests cannot run: {_UNAVAILABLE}")
    pytest.skip(_UNAVAILABLE)


@pytest.fixture
def netns() -> Iterator[str]:
    """This test's thread (and what it starts) in a namespace where only ``lo`` exists.

    Yields the namespace the test started in, which nothing here may use.
    """
    outside = os.readlink("/proc/thread-self/ns/net")
    with private_loopback_netns():
        assert os.readlink("/proc/thread-self/ns/net") != outside
        assert non_loopback_interfaces() == []
        yield outside


@pytest.fixture
async def tls_gateway(
    netns: str, accounts: AccountStore, loopback_media: None, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, Path]]:
    """A real gateway over ``wss`` (self-signed cert) on 127.0.0.1; yields it and the cert."""
    cert, key = tmp_path / "gateway-cert.pem", tmp_path / "gateway-key.pem"
    generate_self_signed(cert, key, hosts=("127.0.0.1", "localhost"))
    config = GatewayConfig(port=0, ssl_context=server_ssl_context(cert, key))
    gateway = await Gateway(accounts, config).start()
    yield gateway, cert
    await gateway.stop()


@pytest.fixture
async def python_device(
    tls_gateway: tuple[Gateway, Path], make_token: TokenFactory
) -> AsyncIterator[Device]:
    """Our SDK's Device as ``bob``, talking 1500 Hz, trusting exactly the gateway cert."""
    gateway, cert = tls_gateway
    device = Device(
        make_token(PYTHON),
        chunderw=gateway.host_port,
        ssl_context=client_ssl_context(str(cert)),
        file_input_stream=ToneSource([PYTHON_HZ]),
    )
    yield device
    await device.destroy()


@pytest.fixture
async def open_browser(
    netns: str, tls_gateway: tuple[Gateway, Path], make_token: TokenFactory, tmp_path: Path
) -> AsyncIterator[OpenBrowser]:
    """Start Chromium with the JS SDK page and create a ``Twilio.Device`` in it.

    ``await open_browser(**device_options)`` returns the runner; the Device points at the
    gateway (``chunderw``), plays local silent sounds and publishes no insights, so the
    page never asks for anything but 127.0.0.1. At teardown the test fails if the page
    tried any other host.
    """
    gateway, _ = tls_gateway
    wav = write_tone_wav(tmp_path / "browser-mic.wav", BROWSER_HZ)
    runners: list[BrowserRunner] = []

    async def factory(**options: Any) -> BrowserRunner:
        runner = await BrowserRunner(fake_audio=wav).start()
        runners.append(runner)
        assert runner.process is not None
        browser_ns = os.readlink(f"/proc/{runner.process.pid}/ns/net")
        assert browser_ns == os.readlink("/proc/thread-self/ns/net") != netns
        device_options = {
            "chunderw": gateway.host_port,
            "publishEvents": False,
            "logLevel": "warn",
            "sounds": dict.fromkeys(SOUND_NAMES, "/silence.wav"),
            **options,
        }
        setup = await runner.call("setup", make_token(BROWSER), device_options)
        assert setup["version"].startswith("2.")
        return runner

    yield factory
    for runner in runners:
        try:
            blocked = await runner.call("blocked")
            await runner.call("destroy")
        finally:
            print(f"--- runner log ---\n{runner.tail(80)}")
            await runner.close()
        assert blocked == [], f"the page tried non-loopback hosts: {blocked}"


class PythonAnswerer:
    """Our device's side: accept incoming calls and record what it hears and the digits."""

    def __init__(self, device: Device) -> None:
        self.calls: list[Call] = []
        self.heard = MemorySink()
        self.digits: list[str] = []
        device.on("incoming", self._on_incoming)

    def _on_incoming(self, call: Call) -> None:
        self.calls.append(call)
        call.on("accept", lambda c: c.get_remote_stream().add_sink(self.heard))
        call.on("dtmf", self.digits.append)
        call.accept()

    async def wait_call(self) -> Call:
        await eventually(lambda: bool(self.calls))
        return self.calls[0]


async def _recent(sink: MemorySink, seconds: float = 0.6) -> np.ndarray:
    """The last ``seconds`` of ``sink`` once it holds more than that."""
    await eventually(lambda: len(sink.pcm()) > SAMPLE_RATE * seconds)
    return sink.pcm()[-int(SAMPLE_RATE * seconds) :]


async def _hears(sink: MemorySink, hz: float, not_hz: float) -> None:
    """Wait until the latest audio in ``sink`` is ``hz`` and not ``not_hz`` (10 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        pcm = await _recent(sink)
        if detect_tone(pcm, hz) and not detect_tone(pcm, not_hz):
            return
        assert loop.time() < deadline, f"never heard {hz} Hz alone"
        await asyncio.sleep(0.2)


async def _browser_receives_python_audio(runner: BrowserRunner, call_index: int) -> None:
    """The page's inbound RTP grows, is not silent, and its remote stream peaks at 1500 Hz."""
    first = await runner.call("stats", call_index)
    assert first is not None and first["inbound"] is not None, first
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        stats = await runner.call("stats", call_index)
        inbound = stats["inbound"]
        grew = inbound["packetsReceived"] >= first["inbound"]["packetsReceived"] + 25
        if grew and (inbound.get("audioLevel") or 0.0) > 0.01:
            break
        assert loop.time() < deadline, f"browser inbound RTP did not grow: {stats}"
        await asyncio.sleep(0.2)
    assert stats["outbound"]["packetsSent"] > 0
    # the selected pair: Chrome's host candidate and the gateway's, both on loopback
    pair = stats["pair"]
    assert pair is not None and pair["local"].startswith("127.0.0.1:"), stats
    assert pair["remote"].startswith("127.0.0.1:"), stats
    spectrum = await runner.call("remoteSpectrum", call_index, 600)
    assert spectrum is not None and abs(spectrum["peakHz"] - PYTHON_HZ) < 30, spectrum


async def _browser_calls_python(
    open_browser: OpenBrowser, python_device: Device, **options: Any
) -> tuple[BrowserRunner, int, Call, PythonAnswerer]:
    """The browser registers and calls ``client:bob``; our device answers. Returns both ends."""
    answerer = PythonAnswerer(python_device)
    await python_device.register()
    runner = await open_browser(**options)
    index = await runner.call("connect", {"To": f"client:{PYTHON}", "note": "from a browser"})
    await runner.wait_event("accept", call=index)
    python_call = await answerer.wait_call()
    await eventually(lambda: python_call.status() == "open")
    return runner, index, python_call, answerer


# --------------------------------------------------------------------------- scenarios


async def test_browser_device_registers_and_unregisters(
    open_browser: OpenBrowser, tls_gateway: tuple[Gateway, Path]
) -> None:
    gateway, _ = tls_gateway
    runner = await open_browser()
    assert runner.ready["sdk"].startswith("2.")
    assert await runner.call("register") == "registered"
    await runner.wait_event("registered", source="device")
    assert len(gateway.presence.connections(DEV_ACCOUNT_SID, BROWSER)) == 1
    assert await runner.call("unregister") == "unregistered"
    await runner.wait_event("unregistered", source="device")
    assert list(gateway.presence.connections(DEV_ACCOUNT_SID, BROWSER)) == []
    names = [e["name"] for e in await runner.events() if e["source"] == "device"]
    assert names[:2] == ["registering", "registered"] and "error" not in names


async def test_browser_calls_python_audio_both_ways_then_browser_hangs_up(
    open_browser: OpenBrowser, python_device: Device, tls_gateway: tuple[Gateway, Path]
) -> None:
    gateway, _ = tls_gateway
    runner, index, python_call, answerer = await _browser_calls_python(open_browser, python_device)
    events = [e["name"] for e in await runner.events() if e["call"] == index]
    assert events[:2] == ["ringing", "accept"]
    info = await runner.call("call", index)
    assert info["status"] == "open" and info["parameters"]["CallSid"].startswith("CA")
    assert python_call.parameters["From"] == f"client:{BROWSER}"
    assert python_call.custom_parameters == {"note": "from a browser"}

    await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)  # browser -> Python
    await _browser_receives_python_audio(runner, index)  # Python -> browser

    # (4a) the browser hangs up: our device gets disconnect
    log = EventLog(python_call, "disconnect", "error")
    assert await runner.call("disconnect", index) == "closed"
    await log.wait_for("disconnect")
    assert log.count("error") == 0 and python_call.status() == "closed"
    await runner.wait_event("disconnect", call=index)
    await eventually(lambda: bool(gateway.calls.records))
    assert gateway.calls.records[-1]["answered"] is True


async def test_python_calls_browser_audio_both_ways_then_python_hangs_up(
    open_browser: OpenBrowser, python_device: Device
) -> None:
    # Opus first with a bitrate cap: the SDK munges its answer (codec order and the
    # maxaveragebitrate fmtp, with its stray CR) before sending it to the gateway.
    runner = await open_browser(codecPreferences=["opus", "pcmu"], maxAverageBitrate=16000)
    assert await runner.call("register") == "registered"
    call = await python_device.connect(params={"To": f"client:{BROWSER}", "topic": "a b&c"})
    log = EventLog(call, "ringing", "accept", "disconnect", "error")
    incoming = await runner.wait_event("incoming", source="device")
    details = incoming["args"][0]
    index = details["call"]
    assert details["parameters"]["From"] == f"client:{PYTHON}"
    assert details["parameters"]["To"] == f"client:{BROWSER}"
    assert details["customParameters"] == {"topic": "a b&c"}
    await log.wait_for("ringing")

    assert await runner.call("accept", index) in ("connecting", "open")
    await runner.wait_event("accept", call=index)
    await log.wait_for("accept")
    heard = MemorySink()
    remote = call.get_remote_stream()
    assert remote is not None
    remote.add_sink(heard)

    await _hears(heard, BROWSER_HZ, PYTHON_HZ)  # browser -> Python
    await _browser_receives_python_audio(runner, index)  # Python -> browser
    stats = await runner.call("stats", index)
    assert {c["mimeType"].lower() for c in stats["codecs"]} == {"audio/opus"}

    # (4b) our device hangs up: the browser's call gets disconnect
    call.disconnect()
    event = await runner.wait_event("disconnect", call=index)
    assert event["source"] == "call"
    assert (await runner.call("call", index))["status"] == "closed"
    assert log.count("error") == 0
    names = [e["name"] for e in await runner.events() if e["call"] == index]
    assert "error" not in names


async def test_browser_dtmf_reaches_python_as_rfc4733(
    open_browser: OpenBrowser, python_device: Device, tls_gateway: tuple[Gateway, Path]
) -> None:
    gateway, _ = tls_gateway
    runner, index, python_call, answerer = await _browser_calls_python(open_browser, python_device)
    await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)
    # Chrome can insert RFC 4733 events (telephone-event negotiated with the gateway), so
    # the SDK sends in-band DTMF rather than its `dtmf` signaling fallback
    assert (await runner.call("stats", index))["canInsertDTMF"] is True
    digits = "1234#*0"
    assert await runner.call("sendDigits", index, digits) is True
    await eventually(lambda: len(answerer.digits) >= len(digits), timeout=15)
    assert "".join(answerer.digits) == digits
    # the events were swallowed by the receive shims: the audio goes on afterwards
    answerer.heard.clear()
    await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)
    python_call.disconnect()
    await runner.wait_event("disconnect", call=index)
    await eventually(lambda: bool(gateway.calls.records))
    assert gateway.calls.records[-1]["digits"] == digits


async def test_relay_only_browser_talks_to_python_through_coturn(
    open_browser: OpenBrowser, python_device: Device, coturn: Coturn
) -> None:
    """Issue 17: the JS SDK with ``iceTransportPolicy: "relay"``, media through coturn.

    coturn (``tests/fixtures_turn.py``) starts inside this test's network namespace; the
    browser may only use its relay candidate, which reaches the gateway's host candidate.
    """
    answerer = PythonAnswerer(python_device)
    await python_device.register()
    runner = await open_browser()
    rtc = {"iceServers": [coturn.ice_server("udp")], "iceTransportPolicy": "relay"}
    index = await runner.call("connect", {"To": f"client:{PYTHON}"}, {"rtcConfiguration": rtc})
    await runner.wait_event("accept", call=index)
    python_call = await answerer.wait_call()
    await eventually(lambda: python_call.status() == "open")
    await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)  # browser -> Python
    first = await runner.call("stats", index)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:  # Python -> browser
        stats = await runner.call("stats", index)
        inbound, before = stats["inbound"], (first["inbound"] or {}).get("packetsReceived", 0)
        if inbound and inbound["packetsReceived"] >= before + 25 and inbound["audioLevel"]:
            break
        assert loop.time() < deadline, f"browser inbound RTP did not grow: {stats}"
        await asyncio.sleep(0.2)
    pair = stats["pair"]
    assert pair["localType"] == "relay" and pair["local"].startswith(f"{coturn.host}:"), stats
    assert pair["remote"].startswith("127.0.0.1:"), stats  # the gateway's own address
    assert await runner.call("disconnect", index) == "closed"
    await eventually(lambda: coturn.peer_usage() != [], timeout=15)  # logged on close
    usage = coturn.peer_usage()[0]
    assert usage.packets_from_peer >= 25 and usage.packets_to_peer >= 25, usage


async def test_browser_runs_a_twiml_app_hears_its_say_and_gathers_digits(
    open_browser: OpenBrowser, tls_gateway: tuple[Gateway, Path], accounts: AccountStore
) -> None:
    """The official JS SDK calls a TwiML application on our gateway: it hears the
    ``<Say>``, its DTMF answers the ``<Gather>``, and the app's ``<Hangup>`` ends it."""
    app = await AppServer("browser-app-auth-token").start()
    try:
        accounts.add_account(
            DEV_ACCOUNT_SID,
            [Application(DEV_APPLICATION_SID, f"{app.url}/voice")],
            auth_token="browser-app-auth-token",
        )

        def voice(params: dict[str, str]) -> str:
            response = VoiceResponse()
            gather = Gather(num_digits=1, action="/menu", timeout=15)
            gather.say("Welcome. Press two for the browser menu.", loop=3)
            response.append(gather)
            return str(response)

        def menu(params: dict[str, str]) -> str:
            response = VoiceResponse()
            response.say(f"You chose {params['Digits']}.")
            response.hangup()
            return str(response)

        app.routes["/voice"] = voice
        app.routes["/menu"] = menu
        runner = await open_browser()
        index = await runner.call("connect", {"To": "menu", "note": "from a browser"})
        await runner.wait_event("accept", call=index)
        first = await app.wait_for("/voice")
        assert (
            first.params["From"] == f"client:{BROWSER}" and first.params["note"] == "from a browser"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while ((await runner.call("stats", index))["inbound"] or {}).get("audioLevel", 0) < 0.01:
            assert loop.time() < deadline, "the browser never heard the <Say>"
            await asyncio.sleep(0.1)
        assert await runner.call("sendDigits", index, "2") is True
        assert (await app.wait_for("/menu")).params["Digits"] == "2"
        await runner.wait_event("disconnect", call=index, timeout=20)
        assert all(hit.valid for hit in app.hits)
        names = [e["name"] for e in await runner.events() if e["call"] == index]
        assert "error" not in names
    finally:
        await app.stop()


# ------------------------------------------------------------- a gateway dies mid-call


@pytest.fixture
async def tls_cluster(
    netns: str, accounts: AccountStore, loopback_media: None, tmp_path: Path
) -> AsyncIterator[tuple[subprocess.Popen[bytes], Gateway, FailoverProxy, Path, RedisServer]]:
    """Gateway A (a ``softphone gateway`` process, killable), gateway B (here), both over
    ``wss`` with one certificate and sharing a redis-server, and one address in front of
    both (A while it is up, then B), all inside the test's namespace."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    cert, key = tmp_path / "cluster-cert.pem", tmp_path / "cluster-key.pem"
    generate_self_signed(cert, key, hosts=("127.0.0.1", "localhost"))
    redis = RedisServer()
    await redis.start()
    gw_b = Gateway(
        accounts,
        GatewayConfig(
            port=0,
            ssl_context=server_ssl_context(cert, key),
            heartbeat_interval_s=1.0,
            redis_url=redis.url,
            gateway_id="gw-b",
            cluster_ttl_s=TTL_S,
        ),
    )
    await gw_b.start()
    port_a = free_port()
    with open(tmp_path / "gw-a.log", "wb") as log:
        gw_a = subprocess.Popen(
            [
                *(sys.executable, "-m", "softphone.cli", "gateway", "--port", str(port_a)),
                *("--cert", str(cert), "--key", str(key), "--no-db", "--redis", redis.url),
                *("--gateway-id", "gw-a", "--heartbeat-interval", "1"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    proxy = FailoverProxy([port_a, gw_b.port])
    try:
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port_a)
            except OSError:
                assert gw_a.poll() is None, (tmp_path / "gw-a.log").read_text()
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        await proxy.start()
        yield gw_a, gw_b, proxy, cert, redis
    finally:
        await proxy.stop()
        if gw_a.poll() is None:
            gw_a.kill()
        gw_a.wait()
        await gw_b.stop()
        await redis.stop()
        await redis.client.aclose()


async def test_browser_call_survives_its_gateway_being_killed(
    open_browser: OpenBrowser,
    tls_cluster: tuple[subprocess.Popen[bytes], Gateway, FailoverProxy, Path, RedisServer],
    make_token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="softphone.gateway")
    gw_a, gw_b, proxy, cert, redis = tls_cluster
    bob = Device(
        make_token(PYTHON),
        chunderw=gw_b.host_port,
        ssl_context=client_ssl_context(str(cert)),
        file_input_stream=ToneSource([PYTHON_HZ]),
    )
    try:
        answerer = PythonAnswerer(bob)
        await bob.register()
        await redis.wait_presence(DEV_ACCOUNT_SID, PYTHON, "gw-b")
        runner = await open_browser(
            chunderw=f"127.0.0.1:{proxy.port}", maxCallSignalingTimeoutMs=30_000
        )
        index = await runner.call("connect", {"To": f"client:{PYTHON}"})
        await runner.wait_event("accept", call=index)
        python_call = await answerer.wait_call()
        await eventually(lambda: python_call.status() == "open")
        await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)
        await _browser_receives_python_audio(runner, index)

        gw_a.kill()  # the browser's gateway dies with its sockets and media
        await runner.wait_event("reconnecting", call=index, timeout=20)
        await runner.wait_event("reconnected", call=index, timeout=40)
        assert python_call.status() == "open"
        # gw-b took the browser's leg over; Chrome's ICE restart got a new DTLS session
        heard_before = answerer.heard.samples_written
        await eventually(lambda: answerer.heard.samples_written > heard_before + SAMPLE_RATE)
        await _hears(answerer.heard, BROWSER_HZ, PYTHON_HZ)
        await _browser_receives_python_audio(runner, index)
        assert "client:alice took over its caller leg here" in caplog.text
        assert "new media session for the caller leg" in caplog.text

        log = EventLog(python_call, "disconnect", "error")
        assert await runner.call("disconnect", index) == "closed"
        await log.wait_for("disconnect")
        assert log.count("error") == 0
    finally:
        await bob.destroy()
