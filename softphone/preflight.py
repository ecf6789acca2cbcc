"""``softphone preflight``: can this machine make a call, and by which network path?

One echo call through a gateway (the one given with ``--url``/``--token``, else an
embedded one on 127.0.0.1), with a tone sent and listened for on the way back. The
report says how long signaling and call setup took, which ICE candidates were
gathered (and which TURN servers answered or not), which candidate pair carried the
media (host, srflx or relay, and over which protocol to the TURN server) and whether
the audio made the round trip. It is the first thing to run behind a firewall.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.memory import MemorySink
from softphone.audio_backends.tone import ToneSource
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.core.errors import TwilioError
from softphone.media.ice_gathering import GatheringReport

TONE_HZ = 1000.0
CALL_SETUP_TIMEOUT_S = 20.0


@attrs.define(kw_only=True)
class PreflightSettings:
    """What ``softphone preflight`` checks, and against which gateway."""

    url: str | None = None
    """Signaling URL (``chunderw``); None: an embedded gateway on 127.0.0.1."""
    token: str | None = None
    """Access token, required with ``url``."""
    ice_servers: list[dict[str, Any]] = attrs.field(factory=list)
    """``iceServers`` (e.g. the ``ice_servers`` of the REST API's Tokens resource)."""
    relay_only: bool = False
    """``iceTransportPolicy: "relay"``: prove the TURN path alone works."""
    ssl_context: ssl.SSLContext | None = None
    """Trust for ``wss``/``turns`` (None: the system store or ``SSL_CERT_FILE``)."""
    listen_s: float = 5.0
    """How long to listen for the echoed tone."""


@attrs.define
class PreflightReport:
    """What one preflight call found."""

    ok: bool = False
    signaling_ms: float | None = None
    setup_ms: float | None = None
    gathered: dict[str, int] = attrs.field(factory=dict)
    turn_relays: dict[str, str] = attrs.field(factory=dict)
    turn_timed_out: list[str] = attrs.field(factory=list)
    turn_failed: dict[str, str] = attrs.field(factory=dict)
    pair: dict[str, Any] | None = None
    heard_ms: float | None = None
    error: str | None = None

    def lines(self) -> list[str]:
        """The report, one finding a line."""
        out = []
        if self.signaling_ms is not None:
            out.append(f"signaling: connected in {self.signaling_ms:.0f} ms")
        if self.setup_ms is not None:
            out.append(f"call setup: echo answered in {self.setup_ms:.0f} ms")
        if self.gathered:
            counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.gathered.items()))
            out.append(f"ICE candidates gathered: {counts}")
        for url, protocol in self.turn_relays.items():
            out.append(f"  TURN {url}: relay over {protocol}")
        for url in self.turn_timed_out:
            out.append(f"  TURN {url}: no answer in time (blocked?)")
        for url, why in self.turn_failed.items():
            out.append(f"  TURN {url}: failed: {why}")
        if self.pair:
            pair = self.pair
            via = (
                f" over {pair['relayProtocol']} to the TURN server"
                if pair.get("relayProtocol")
                else ""
            )
            out.append(
                f"media path: local {pair['localCandidateType']} {pair['localAddress']}:"
                f"{pair['localPort']} -> remote {pair['remoteCandidateType']} "
                f"{pair['remoteAddress']}:{pair['remotePort']}{via}"
            )
        if self.heard_ms is not None:
            out.append(f"audio: the echoed tone came back after {self.heard_ms:.0f} ms")
        if self.error:
            out.append(f"problem: {self.error}")
        out.append("result: OK" if self.ok else "result: FAILED")
        return out


async def run_preflight(settings: PreflightSettings) -> PreflightReport:
    """Run the preflight call against the given gateway (or an embedded one)."""
    if settings.url is None:
        return await _with_embedded_gateway(settings)
    if not settings.token:
        raise ValueError("a token is needed with a gateway URL")
    return await _preflight(settings.url, settings.token, settings)


async def _with_embedded_gateway(settings: PreflightSettings) -> PreflightReport:
    from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
    from softphone.gateway.server import Gateway, GatewayConfig
    from softphone.gateway.tokens import mint_token
    from softphone.media.aiortc_hooks import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    accounts = AccountStore.dev()
    gateway = await Gateway(accounts, GatewayConfig(port=0)).start()
    token = mint_token(
        accounts.default_key(), "preflight", outgoing_application_sid=DEV_APPLICATION_SID
    )
    try:
        return await _preflight(gateway.url, token, settings)
    finally:
        await gateway.stop()


async def _preflight(url: str, token: str, settings: PreflightSettings) -> PreflightReport:
    report = PreflightReport()
    loop = asyncio.get_running_loop()
    rtc: dict[str, Any] = {"iceServers": settings.ice_servers}
    if settings.relay_only:
        rtc["iceTransportPolicy"] = "relay"
    options: dict[str, Any] = {
        "chunderw": url,
        "file_input_stream": ToneSource([TONE_HZ]),
        "rtc_configuration": rtc,
        "log_level": "silent",
    }
    if settings.ssl_context is not None:
        options["ssl_context"] = settings.ssl_context
    device = Device(token, options)
    device.on("error", lambda *_: None)  # reported through the call or the rejection
    call = None
    try:
        started = loop.time()
        await device.register()
        report.signaling_ms = (loop.time() - started) * 1000
        started = loop.time()
        call = await device.connect(params={"To": "echo"})
        outcome = await _accepted_or_ended(call, CALL_SETUP_TIMEOUT_S)
        if outcome is not None:
            report.error = outcome
            return report
        report.setup_ms = (loop.time() - started) * 1000
        heard = MemorySink()
        remote = call.get_remote_stream()
        if remote is not None:
            remote.add_sink(heard)
        report.heard_ms = await _until_heard(heard, settings.listen_s, loop.time)
        if call.peer_connection is not None:
            report.pair = (await call.peer_connection.get_stats()).get("selectedCandidatePair")
        report.ok = report.heard_ms is not None
        if not report.ok:
            report.error = f"the tone did not come back within {settings.listen_s:g} s"
    except TwilioError as exc:
        report.error = exc.message
    finally:
        if call is not None and call.peer_connection is not None:
            _note_gathering(report, call.peer_connection.ice_gathering)
        await device.destroy()
    return report


async def _accepted_or_ended(call: Call, timeout: float) -> str | None:
    """None once ``call`` is accepted; else why it ended or that it timed out."""
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    errors: list[str] = []

    def settle(result: str | None) -> None:
        if not done.done():
            done.set_result(result)

    call.on("accept", lambda *_: settle(None))
    call.on("error", lambda error, *_: errors.append(error.message))
    call.on("warning", lambda name, *_: errors.append(f"warning {name}"))
    call.on("disconnect", lambda *_: settle("; ".join(errors) or "the call ended unanswered"))
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        reasons = "; ".join(errors)
        return f"the echo call was not answered within {timeout:g} s" + (
            f" ({reasons})" if reasons else ""
        )


def _note_gathering(report: PreflightReport, gathering: GatheringReport | None) -> None:
    """Copy what ICE gathering found (candidate types, TURN outcomes) into ``report``."""
    if gathering is None:
        return
    report.gathered = dict(Counter(gathering.candidate_types))
    report.turn_relays = dict(gathering.relays)
    report.turn_timed_out = list(gathering.timed_out)
    report.turn_failed = dict(gathering.failed)


async def _until_heard(
    sink: MemorySink, seconds: float, clock: Callable[[], float]
) -> float | None:
    """Milliseconds until the last 100 ms of ``sink`` hold the tone, None if never."""
    started = clock()
    window = 4800  # 100 ms at 48 kHz
    while clock() - started < seconds:
        await asyncio.sleep(0.05)
        pcm = sink.pcm()
        if len(pcm) >= window and detect_tone(pcm[-window:], TONE_HZ):
            return (clock() - started) * 1000
    return None


def load_ice_servers(text: str) -> list[dict[str, Any]]:
    """``--ice-servers``: JSON (a list, or a Tokens resource with ``ice_servers``) or
    ``@FILE`` holding it."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("ice_servers")
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise ValueError("--ice-servers must be a JSON list of server objects")
    return data


__all__ = ["PreflightReport", "PreflightSettings", "load_ice_servers", "run_preflight"]
