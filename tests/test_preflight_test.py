"""PreflightTest against a real gateway on 127.0.0.1 (checklist X 268-289).

The test call is a real echo call (the gateway answers a call without parameters
with its echo app) with real aiortc media; failures come from a real refused port,
a real silent listener, a real refused token and a real lossy UDP path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from recorders import EventLog
from test_preflight_report import REPORT_KEYS

from benchmarks.udp_relay import UdpRelay, loss
from softphone.audio_backends.tone import ToneSource
from softphone.core.device import Device, DeviceState
from softphone.core.errors import InvalidArgumentError, TwilioError
from softphone.core.preflight_report import PreflightTestReport
from softphone.core.preflight_test import PreflightStatus, PreflightTest, run_preflight
from softphone.gateway.server import Gateway
from softphone.media.peer_connection import PeerConnection

RTC = {"iceServers": []}
OUTCOME_TIMEOUT_S = 60.0


class Recorded:
    """A PreflightTest with its events recorded and the Devices it built kept."""

    def __init__(self, test: PreflightTest, devices: list[Device]) -> None:
        self.test = test
        self.devices = devices
        self.log = EventLog(test, "connected", "sample", "warning", "completed", "failed")

    @property
    def device(self) -> Device:
        assert len(self.devices) == 1
        return self.devices[0]

    async def outcome(self) -> tuple[str, Any]:
        """``("completed", report)`` or ``("failed", error)``, whichever comes first."""
        done: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        for name in ("completed", "failed"):
            self.test.once(name, lambda arg, name=name: done.done() or done.set_result((name, arg)))
        if self.test.status in (PreflightStatus.COMPLETED, PreflightStatus.FAILED):
            return self.log.events[-1][0], self.log.events[-1][1][0]
        return await asyncio.wait_for(done, OUTCOME_TIMEOUT_S)


@pytest.fixture
async def start_preflight(
    gateway: Gateway, make_token: Callable[..., str]
) -> AsyncIterator[Callable[..., Recorded]]:
    """Start PreflightTests against the ``gateway`` fixture; stopped at teardown."""
    started: list[Recorded] = []

    def start(token: str | None = None, **options: Any) -> Recorded:
        devices: list[Device] = []
        make_device = options.pop("device_factory", Device)

        def factory(token: str, device_options: Mapping[str, Any]) -> Device:
            device = make_device(token, device_options)
            devices.append(device)
            return device

        options.setdefault("chunderw", gateway.url)
        options.setdefault("rtc_configuration", RTC)
        test = PreflightTest(token or make_token("preflight"), device_factory=factory, **options)
        recorded = Recorded(test, devices)
        started.append(recorded)
        return recorded

    yield start
    for recorded in started:
        recorded.test.stop()
        for device in recorded.devices:
            await device.destroy()


# -- a clean run ----------------------------------------------------------------------------
async def test_a_clean_preflight_completes_with_an_excellent_report(
    start_preflight: Callable[..., Recorded],
) -> None:
    seen_at_connect: dict[str, Any] = {}
    run = start_preflight(
        fake_mic_input=True,
        call_duration_ms=6000,
        signaling_timeout_ms=4000,  # shorter than the call: the timer must be cleared
    )

    def on_connected() -> None:
        call = run.test.call
        assert call is not None and run.device.audio is not None
        seen_at_connect.update(
            status=run.test.status,
            call_sid=run.test.call_sid,
            remote_sinks=call.get_remote_stream().sinks,  # type: ignore[union-attr]
            outgoing_sound=run.device.audio.outgoing(),
            disconnect_sound=run.device.audio.disconnect(),
        )

    run.test.on("connected", on_connected)
    assert run.test.status is PreflightStatus.CONNECTING
    kind, report = await run.outcome()
    assert kind == "completed", report
    test = run.test
    assert isinstance(report, PreflightTestReport) and report is test.report
    assert test.status is PreflightStatus.COMPLETED
    assert run.log.names()[0] == "connected" and run.log.count("failed") == 0

    # 268, 270, 271, 273: the Device the test built, fake input, sounds and echo muted
    options = run.device.options
    assert options.codec_preferences == ("pcmu", "opus") and options.edge == "roaming"
    assert options.log_level == "error" and options.preflight is True
    assert isinstance(options.file_input_stream, ToneSource)
    assert seen_at_connect["status"] is PreflightStatus.CONNECTED
    assert seen_at_connect["remote_sinks"] == []
    assert seen_at_connect["outgoing_sound"] is False
    assert seen_at_connect["disconnect_sound"] is False

    # 274: every sample re-emitted, the last one is latest_sample
    samples = [args[0] for args in run.log.args("sample")]
    assert len(samples) >= 3 and samples == report.samples
    assert test.latest_sample is samples[-1]

    # 277, 279, 280: the report
    js = report.to_dict()
    assert set(js) == REPORT_KEYS, set(js) ^ REPORT_KEYS
    assert report.call_quality == "excellent" and js["callQuality"] == "excellent"
    assert js["callSid"] == test.call_sid == seen_at_connect["call_sid"]
    assert test.call_sid is not None and test.call_sid.startswith("CA")
    assert js["selectedEdge"] == "roaming" and js["edge"] == "loopback"
    assert js["isTurnRequired"] is False
    pair = js["selectedIceCandidatePairStats"]
    assert pair["localCandidate"]["candidateType"] == "host"
    assert pair["remoteCandidate"]["candidateType"] == "host"
    assert pair["localCandidate"] in js["iceCandidateStats"]
    assert pair["remoteCandidate"] in js["iceCandidateStats"]
    assert set(js["networkTiming"]) == {"signaling", "peerConnection", "ice", "dtls"}
    for timing in js["networkTiming"].values():
        assert timing["end"] >= timing["start"] >= test.start_time
        assert timing["duration"] == timing["end"] - timing["start"]
    assert js["testTiming"] == {
        "start": test.start_time,
        "end": test.end_time,
        "duration": test.end_time - test.start_time,  # type: ignore[operator]
    }
    assert js["totals"] == samples[-1].totals.to_dict()
    assert js["totals"]["packetsReceived"] > 0
    assert js["stats"]["mos"]["min"] > 4.2

    # 279: Device destroyed, every listener gone; a late stop() changes nothing
    assert run.device.state is DeviceState.DESTROYED and run.device.event_names() == []
    assert test.call is not None and test.call.event_names() == []
    test.stop()
    await asyncio.sleep(0.05)
    assert test.status is PreflightStatus.COMPLETED and run.log.count("failed") == 0


# -- stop(), failures -------------------------------------------------------------------------
async def test_stop_fails_the_test_with_31008_and_no_report(
    start_preflight: Callable[..., Recorded],
) -> None:
    run = start_preflight(fake_mic_input=True)
    await run.log.wait_for("connected", timeout=OUTCOME_TIMEOUT_S)
    run.test.stop()
    run.test.stop()
    kind, error = await run.outcome()
    assert kind == "failed" and isinstance(error, TwilioError) and error.code == 31008
    assert run.test.status is PreflightStatus.FAILED and run.test.report is None
    assert run.test.end_time is not None
    assert run.device.state is DeviceState.DESTROYED
    assert run.test.call is not None and run.test.call.event_names() == []
    await asyncio.sleep(0.05)
    assert run.log.count("failed") == 1 and run.log.count("completed") == 0


async def test_no_gateway_listening_fails_with_53000_naming_the_cause(
    start_preflight: Callable[..., Recorded],
) -> None:
    run = start_preflight(chunderw="ws://127.0.0.1:9/signal", signaling_timeout_ms=3000)
    kind, error = await run.outcome()
    assert kind == "failed" and isinstance(error, TwilioError) and error.code == 53000
    assert "refused" in error.message
    assert run.test.status is PreflightStatus.FAILED and run.log.count("connected") == 0
    assert run.device.state is DeviceState.DESTROYED


async def test_a_gateway_that_never_answers_fails_at_the_signaling_timeout(
    start_preflight: Callable[..., Recorded],
) -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        run = start_preflight(chunderw=f"ws://127.0.0.1:{port}/signal", signaling_timeout_ms=1000)
        kind, error = await run.outcome()
    finally:
        server.close()
    assert kind == "failed" and isinstance(error, TwilioError) and error.code == 53000
    assert "WebSocket Connection Timeout" in error.message
    assert run.test.end_time is not None
    assert run.test.end_time - run.test.start_time >= 1000


async def test_a_refused_token_fails_with_the_token_error(
    start_preflight: Callable[..., Recorded],
) -> None:
    run = start_preflight(token="not-a-token")
    kind, error = await run.outcome()
    assert kind == "failed" and isinstance(error, TwilioError) and error.code == 20101
    assert run.device.state is DeviceState.DESTROYED


async def test_a_device_error_during_the_call_fails_the_test_once(
    start_preflight: Callable[..., Recorded],
) -> None:
    run = start_preflight(fake_mic_input=True)
    await run.log.wait_for("connected", timeout=OUTCOME_TIMEOUT_S)
    run.device.update_token("not-a-token")  # the gateway answers with an `error` frame
    kind, error = await run.outcome()
    assert kind == "failed" and isinstance(error, TwilioError) and error.code == 20101
    assert run.test.status is PreflightStatus.FAILED and run.test.report is None
    assert run.device.state is DeviceState.DESTROYED
    await asyncio.sleep(0.05)
    assert run.log.count("failed") == 1 and run.log.count("completed") == 0


@pytest.mark.pure
async def test_a_device_that_cannot_be_built_fails_after_listeners_are_attached() -> None:
    test = Device.run_preflight("token", {"chunderw": "http://127.0.0.1:1/signal"})
    assert isinstance(test, PreflightTest)
    failed = EventLog(test, "failed")
    (error,) = await failed.wait_for("failed")
    assert isinstance(error, InvalidArgumentError) and "http://" in str(error)
    assert test.status is PreflightStatus.FAILED


@pytest.mark.pure
async def test_unknown_options_are_refused_with_a_suggestion() -> None:
    with pytest.raises(InvalidArgumentError, match="Did you mean `fake_mic_input`"):
        run_preflight("token", {"fakeMicInputs": True})
    with pytest.raises(InvalidArgumentError, match="signaling_timeout_ms"):
        run_preflight("token", signalingTimeoutMs=0)


# -- a lossy path -------------------------------------------------------------------------------
class LossyPeerConnection(PeerConnection):
    """Our PeerConnection, its media to and from the gateway through ``relay``."""

    def __init__(self, relay: UdpRelay, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relay = relay

    async def create_offer(self, source: Any) -> str:
        return self.relay.from_a(await super().create_offer(source))

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(self.relay.from_b(sdp))


async def test_five_percent_loss_is_not_reported_as_excellent(
    start_preflight: Callable[..., Recorded],
) -> None:
    relay = UdpRelay()
    relay.b_to_a.policy = loss(5.0, seed=7)  # gateway -> us

    def lossy(config: Mapping[str, Any]) -> PeerConnection:
        return LossyPeerConnection(relay, ice_servers=list(config.get("iceServers") or []))

    def device(token: str, options: Mapping[str, Any]) -> Device:
        return Device(token, {**options, "rtc_peer_connection": lossy})

    try:
        run = start_preflight(fake_mic_input=True, call_duration_ms=7000, device_factory=device)
        kind, report = await run.outcome()
    finally:
        relay.close()
    assert kind == "completed", report
    assert relay.b_to_a.dropped > 0
    assert report.totals.packets_lost > 0
    assert report.stats is not None and report.stats.mos.average < 4.2
    assert report.call_quality is not None and report.call_quality != "excellent"


async def test_an_unreachable_insights_endpoint_is_one_warning(
    start_preflight: Callable[..., Recorded],
) -> None:
    """276: the first failed insights post is ``insights-connection-error``, once."""
    run = start_preflight(eventgw="http://127.0.0.1:9", call_duration_ms=2500)
    kind, report = await run.outcome()
    assert kind == "completed", report
    names = [warning.name for (warning,) in run.log.args("warning")]
    assert names.count("insights-connection-error") == 1, names
