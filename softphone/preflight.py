"""``softphone preflight``: can this machine make a call, by which network path, how well?

One :class:`~softphone.core.preflight_test.PreflightTest` (an echo call through the
gateway given with ``--url``/``--token``, else an embedded one on 127.0.0.1) with
a tone sent and listened for on the way back. The report says how long signaling
and call setup took (and ICE, DTLS, the peer connection), which ICE candidates were
gathered (and which TURN servers answered or not), which candidate pair carried
the media (host, srflx or relay, and over which protocol to the TURN server),
whether the audio made the round trip, and the call quality the test measured
(band, MOS, jitter and rtt) with the warnings raised. It is the first thing to run
behind a firewall.
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
from softphone.core.errors import TwilioError
from softphone.core.preflight_report import PreflightTestReport, Stats
from softphone.core.preflight_test import FAKE_MIC_TONE_HZ, PreflightStatus, PreflightTest
from softphone.core.rtc_sample import RTCSample
from softphone.media.ice_gathering import GatheringReport

TONE_HZ = FAKE_MIC_TONE_HZ[0]
CALL_SETUP_TIMEOUT_S = 20.0

SampleListener = Callable[[int, RTCSample], None]
"""Told of each sample as it comes: its number (from 1) and the sample."""


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
    """How long after the call connects the echoed tone must be heard."""
    seconds: float = 10.0
    """How long the test call lasts (its samples make the quality figures)."""
    log_level: str = "warn"
    """The SDK's ``logLevel`` during the test."""


@attrs.define
class PreflightReport:
    """What one preflight call found."""

    ok: bool = False
    setup_ms: float | None = None
    gathered: dict[str, int] = attrs.field(factory=dict)
    turn_relays: dict[str, str] = attrs.field(factory=dict)
    turn_timed_out: list[str] = attrs.field(factory=list)
    turn_failed: dict[str, str] = attrs.field(factory=dict)
    heard_ms: float | None = None
    error: str | None = None
    error_code: int | None = None
    test: PreflightTestReport | None = None
    """The PreflightTest report (JS keys with ``test.to_dict()``), when it completed."""

    def lines(self) -> list[str]:
        """The report, one finding a line."""
        out = []
        test = self.test
        timing = test.network_timing if test is not None else None
        if timing is not None and timing.signaling is not None and timing.signaling.duration:
            out.append(
                f"signaling: the echo call was answered in {timing.signaling.duration:.0f} ms"
            )
        if self.setup_ms is not None:
            out.append(f"call setup: connected {self.setup_ms:.0f} ms after the test started")
        if timing is not None:
            steps = [
                f"{label} {measure.duration:.0f} ms"
                for label, measure in (
                    ("ICE", timing.ice),
                    ("DTLS", timing.dtls),
                    ("peer connection", timing.peer_connection),
                )
                if measure is not None and measure.duration is not None
            ]
            if steps:
                out.append("media setup: " + ", ".join(steps))
        if self.gathered:
            counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.gathered.items()))
            out.append(f"ICE candidates gathered: {counts}")
        for url, protocol in self.turn_relays.items():
            out.append(f"  TURN {url}: relay over {protocol}")
        for url in self.turn_timed_out:
            out.append(f"  TURN {url}: no answer in time (blocked?)")
        for url, why in self.turn_failed.items():
            out.append(f"  TURN {url}: failed: {why}")
        pair = test.selected_ice_candidate_pair_stats if test is not None else None
        if pair:
            local, remote = pair["localCandidate"], pair["remoteCandidate"]
            relay = local.get("relayProtocol")
            via = f" over {relay} to the TURN server" if relay else ""
            out.append(
                f"media path: local {local['candidateType']} {local['address']}:{local['port']}"
                f" -> remote {remote['candidateType']} {remote['address']}:{remote['port']}{via}"
            )
        if self.heard_ms is not None:
            out.append(f"audio: the echoed tone came back after {self.heard_ms:.0f} ms")
        if test is not None:
            out += _quality_lines(test)
        if self.error:
            out.append(f"problem: {self.error}")
        out.append("result: OK" if self.ok else "result: FAILED")
        return out

    def to_json(self) -> str:
        """``--json``: the JS-keyed PreflightTest report, or the error that ended the test."""
        if self.test is not None:
            return json.dumps(self.test.to_dict(), indent=2)
        return json.dumps({"error": {"code": self.error_code, "message": self.error}}, indent=2)


def _quality_lines(test: PreflightTestReport) -> list[str]:
    stats = test.stats
    count = len(test.samples)
    if stats is None:
        out = [f"call quality: unknown ({count} samples, none with a MOS)"]
    else:
        out = [
            f"call quality: {test.call_quality} (MOS {_min_avg_max(stats.mos, '.2f')}, "
            f"{count} samples)",
            f"jitter: {_min_avg_max(stats.jitter, '.1f')} ms; "
            f"rtt: {_min_avg_max(stats.rtt, '.1f')} ms",
        ]
    for warning in test.warnings:
        data = warning.rtc_warning
        detail = f" {json.dumps(data, default=str)}" if data else ""
        out.append(f"warning: {warning.name}{detail}")
    return out


def _min_avg_max(stats: Stats, spec: str) -> str:
    return (
        f"avg {format(stats.average, spec)}, min {format(stats.min, spec)}, "
        f"max {format(stats.max, spec)}"
    )


async def run_preflight(
    settings: PreflightSettings, on_sample: SampleListener | None = None
) -> PreflightReport:
    """Run the preflight test against the given gateway (or an embedded one)."""
    if settings.url is None:
        return await _with_embedded_gateway(settings, on_sample)
    if not settings.token:
        raise ValueError("a token is needed with a gateway URL")
    return await _preflight(settings.url, settings.token, settings, on_sample)


async def _with_embedded_gateway(
    settings: PreflightSettings, on_sample: SampleListener | None
) -> PreflightReport:
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
        return await _preflight(gateway.url, token, settings, on_sample)
    finally:
        await gateway.stop()


async def _preflight(
    url: str, token: str, settings: PreflightSettings, on_sample: SampleListener | None
) -> PreflightReport:
    report = PreflightReport()
    loop = asyncio.get_running_loop()
    rtc: dict[str, Any] = {"iceServers": settings.ice_servers}
    if settings.relay_only:
        rtc["iceTransportPolicy"] = "relay"
    test = PreflightTest(
        token,
        chunderw=url,
        fake_mic_input=True,
        rtc_configuration=rtc,
        log_level=settings.log_level,
        call_duration_ms=settings.seconds * 1000,
        ssl_context=settings.ssl_context,
    )
    started = loop.time()
    outcome: asyncio.Future[BaseException | None] = loop.create_future()
    heard = MemorySink()
    listening: list[asyncio.Task[float | None]] = []

    def on_connected() -> None:
        report.setup_ms = (loop.time() - started) * 1000
        remote = test.call.get_remote_stream() if test.call is not None else None
        if remote is not None:
            remote.add_sink(heard)
        listening.append(loop.create_task(_until_heard(heard, settings.listen_s, loop.time)))

    def settle(result: BaseException | None) -> None:
        if not outcome.done():
            outcome.set_result(result)

    samples = 0

    def sample(value: RTCSample) -> None:
        nonlocal samples
        samples += 1
        if on_sample is not None:
            on_sample(samples, value)

    test.on("connected", on_connected)
    test.on("sample", sample)
    test.on("completed", lambda _: settle(None))
    test.on("failed", settle)

    def give_up_unanswered() -> None:
        if test.status is PreflightStatus.CONNECTING:
            test.stop()

    watchdog = loop.call_later(CALL_SETUP_TIMEOUT_S, give_up_unanswered)
    try:
        error = await outcome
    finally:
        watchdog.cancel()
    report.test = test.report
    if test.peer_connection is not None:
        _note_gathering(report, test.peer_connection.ice_gathering)
    if listening:
        if error is None:
            report.heard_ms = await listening[0]
        else:
            listening[0].cancel()
    report.ok, report.error = _verdict(test, error, report, settings)
    if isinstance(error, TwilioError):
        report.error_code = error.code
    return report


def _verdict(
    test: PreflightTest,
    error: BaseException | None,
    report: PreflightReport,
    settings: PreflightSettings,
) -> tuple[bool, str | None]:
    """Whether the preflight passed, and the problem if not."""
    warnings = ", ".join(w.name for w in report.test.warnings) if report.test else ""
    if error is not None:
        if isinstance(error, TwilioError) and error.code == 31008 and test.call_sid is None:
            cause = f"the echo call was not answered within {CALL_SETUP_TIMEOUT_S:g} s"
            return False, cause + (f" (warnings: {warnings})" if warnings else "")
        return False, error.message if isinstance(error, TwilioError) else repr(error)
    if test.call_sid is None:
        return False, "the echo call never connected" + (
            f" (warnings: {warnings})" if warnings else ""
        )
    if report.heard_ms is None:
        return False, f"the tone did not come back within {settings.listen_s:g} s"
    return True, None


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
