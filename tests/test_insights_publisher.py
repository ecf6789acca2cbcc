"""The publisher posts the JS requests in the background and never hurts the call.

Against real HTTP servers on 127.0.0.1: a recording aiohttp endpoint (to see the exact
requests and to play slow, failing or hanging endpoints), a closed port, and TLS with
a self-signed certificate. The gateway end to end is in ``test_gateway_insights.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from softphone.gateway.tls import client_ssl_context, server_ssl_context
from softphone.insights import events
from softphone.insights.call_reporter import CallReporter
from softphone.insights.events import CallInfo, SessionInfo
from softphone.insights.publisher import EventPublisher
from softphone.version import __version__

SESSION = SessionInfo(sdk_version="1.2.3", gateway="gw", region="r1")
CALL = CallInfo(call_sid="CA1", temp_call_sid="TJS1", direction="OUTGOING")


class Endpoint:
    """A real HTTP endpoint on 127.0.0.1 that records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self.delay_s = 0.0
        self.hang = False
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.scheme = "http"

    async def start(self, port: int = 0, ssl_context: Any = None) -> Endpoint:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        self.port = int(self.runner.addresses[0][1])
        self.scheme = "https" if ssl_context else "http"
        return self

    async def stop(self) -> None:
        self.release.set()  # let hanging requests end
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append((request.path, dict(request.headers), body))
        if self.hang:
            await self.release.wait()
        await asyncio.sleep(self.delay_s)
        return web.json_response({}, status=self.status)

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.requests]


@pytest.fixture
async def recorder() -> AsyncIterator[Endpoint]:
    endpoint = await Endpoint().start()
    yield endpoint
    await endpoint.stop()


def make_publisher(host: str | None, **kwargs: Any) -> EventPublisher:
    kwargs.setdefault("default_payload", lambda call: events.default_payload(SESSION, call))
    return EventPublisher("token-1", host=host, **kwargs)


async def test_posts_the_js_request(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base, metadata={"app_name": "app", "app_version": "2"})
    assert publisher.info("connection", "outgoing", {"preflight": False}, CALL)
    await publisher.close()
    [(path, headers, body)] = recorder.requests
    assert path == "/v4/EndpointEvents"
    assert headers["X-Twilio-Token"] == "token-1"
    assert headers["Content-Type"] == "application/json"
    timestamp = body.pop("timestamp")
    assert timestamp.endswith("Z") and len(timestamp) == 24
    assert body == {
        "group": "connection",
        "level": "INFO",
        "name": "outgoing",
        "payload": {
            "aggressive_nomination": False,
            "browser_extension": False,
            "dscp": True,
            "ice_restart_enabled": True,
            "platform": "WebRTC",
            "sdk_version": "1.2.3",
            "call_sid": "CA1",
            "temp_call_sid": "TJS1",
            "direction": "OUTGOING",
            "gateway": "gw",
            "region": "r1",
            "preflight": False,
        },
        "payload_type": "application/json",
        "private": False,
        "publisher": "twilio-js-sdk",
        "publisher_metadata": {"app_name": "app", "app_version": "2"},
    }
    assert (publisher.sent, publisher.dropped) == (1, 0)


async def test_without_a_default_payload_the_call_ids_still_go(recorder: Endpoint) -> None:
    publisher = EventPublisher("t", host=recorder.base)
    publisher.info("g", "n", {"x": 1}, CALL)
    await publisher.close()
    [payload] = [body["payload"] for body in recorder.bodies()]
    assert (payload["call_sid"], payload["temp_call_sid"], payload["x"]) == ("CA1", "TJS1", 1)
    assert payload["sdk_version"] == __version__ and payload["direction"] == "OUTGOING"


async def test_posts_keep_their_order_and_levels(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base)
    publisher.debug("g", "0", None, CALL)
    publisher.info("g", "1", None, CALL)
    publisher.warn("g", "2", None, CALL)
    publisher.error("g", "3", None, CALL)
    publisher.publish(events.pc_connection_state("failed", "failed"), CALL)
    for n in range(5, 30):
        publisher.info("g", str(n), None, CALL)
    await publisher.close()
    bodies = recorder.bodies()
    assert [b["name"] for b in bodies] == ["0", "1", "2", "3", "failed", *map(str, range(5, 30))]
    assert [b["level"] for b in bodies[:5]] == ["DEBUG", "INFO", "WARNING", "ERROR", "ERROR"]


async def test_chk_018_set_token_and_set_host_apply_to_later_posts(recorder: Endpoint) -> None:
    other = await Endpoint().start()
    try:
        publisher = make_publisher(recorder.base)
        publisher.info("g", "before", None, CALL)
        publisher.set_token("token-2")
        assert publisher.token == "token-2"
        publisher.info("g", "after", None, CALL)
        await publisher.flush()
        publisher.set_host(other.base)
        publisher.info("g", "moved", None, CALL)
        await publisher.close()
    finally:
        await other.stop()
    tokens = [(body["name"], headers["X-Twilio-Token"]) for _, headers, body in recorder.requests]
    assert tokens == [("before", "token-1"), ("after", "token-2")]
    assert [body["name"] for body in other.bodies()] == ["moved"]


async def test_nothing_is_posted_without_host_or_call_id(recorder: Endpoint) -> None:
    nowhere = make_publisher(None)
    assert nowhere.base_url is None
    assert not nowhere.info("g", "n", None, CALL)
    publisher = make_publisher(recorder.base)
    assert not publisher.info("g", "n", None, None)
    assert not publisher.info("g", "n", None, CallInfo(direction="OUTGOING"))
    publisher.set_host(None)
    assert not publisher.info("g", "n", None, CALL)
    await publisher.close()
    await nowhere.close()
    assert recorder.requests == []


async def test_disabled_publishes_only_forced_events(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base, enabled=False)
    assert not publisher.is_enabled
    assert not publisher.publish(events.connection_event("incoming"), CALL)
    assert not publisher.post_metrics("g", "n", [{**_sample(), "inputVolume": 0}], {}, CALL)
    assert publisher.publish(events.feedback(3, "echo"), CALL)
    assert publisher.publish(events.feedback(), CALL)
    publisher.enable()
    assert publisher.publish(events.connection_event("cancel"), CALL)
    await publisher.close()
    assert [(b["group"], b["name"]) for b in recorder.bodies()] == [
        ("feedback", "received"),
        ("feedback", "received-none"),
        ("connection", "cancel"),
    ]


async def test_metrics_go_to_endpoint_metrics(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base)
    samples = [{**_sample(n), "inputVolume": 0.5, "outputVolume": 0.25} for n in range(3)]
    fields = events.metrics_fields(call_sid="CA1", dscp=True, sdk_version="1", direction="OUTGOING")
    assert publisher.post_metrics(events.METRICS_GROUP, events.METRICS_NAME, samples, fields, CALL)
    assert not publisher.post_metrics("g", "n", [{"no": "totals"}], fields, CALL)  # logged
    await publisher.close()
    [(path, _, body)] = recorder.requests
    assert path == "/v4/EndpointMetrics"
    assert (body["group"], body["name"], body["level"]) == (
        "quality-metrics-samples",
        "metrics-sample",
        "INFO",
    )
    assert len(body["payload"]) == 3
    assert body["payload"][0]["call_volume_input"] == 0.5
    assert body["payload"][2]["call_sid"] == "CA1" and body["payload"][2]["direction"] == "OUTGOING"
    assert body["payload"][1]["timestamp"] == "1970-01-01T00:00:01.000Z"


def _sample(second: int = 0) -> dict[str, Any]:
    totals = {"bytesReceived": 1, "bytesSent": 1, "packetsLost": 0, "packetsReceived": 1}
    return {"codecName": "opus", "mos": 4.4, "timestamp": second * 1000, "totals": totals}


async def test_an_error_status_is_delivered_not_an_error(recorder: Endpoint) -> None:
    recorder.status = 500
    errors: list[Exception] = []
    publisher = make_publisher(recorder.base, on_error=errors.append)
    publisher.info("g", "n", None, CALL)
    await publisher.close()
    assert (publisher.sent, publisher.refused, publisher.dropped) == (0, 1, 0)
    assert errors == []


async def test_an_unreachable_endpoint_is_dropped_with_a_log_line(
    recorder: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    port = recorder.port
    await recorder.stop()  # the port is closed now
    errors: list[Exception] = []
    publisher = make_publisher(
        f"http://127.0.0.1:{port}", on_error=errors.append, unreachable_pause_s=0.2
    )
    with caplog.at_level(logging.WARNING, logger="softphone.insights"):
        for n in range(10):
            assert publisher.info("g", str(n), None, CALL)  # queued; no exception here
        assert await publisher.flush()
    assert publisher.sent == 0 and publisher.dropped == 10
    assert len(errors) == 1  # one attempt; the rest fell in the pause
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    # the endpoint comes back on the same port: after the pause, posts go through again
    await recorder.start(port)
    await asyncio.sleep(0.25)
    publisher.info("g", "back", None, CALL)
    await publisher.close()
    assert publisher.sent == 1 and [b["name"] for b in recorder.bodies()] == ["back"]


async def test_a_new_host_ends_the_pause(recorder: Endpoint) -> None:
    publisher = make_publisher("http://127.0.0.1:9", unreachable_pause_s=60)  # discard port
    publisher.info("g", "lost", None, CALL)
    assert await publisher.flush()
    publisher.set_host(recorder.base)
    publisher.info("g", "found", None, CALL)
    await publisher.close()
    assert [b["name"] for b in recorder.bodies()] == ["found"]


async def test_a_hanging_endpoint_never_blocks_and_the_queue_is_bounded(
    recorder: Endpoint,
) -> None:
    recorder.hang = True
    publisher = make_publisher(recorder.base, max_queue=5, request_timeout_s=60)
    for n in range(50):
        assert publisher.info("g", str(n), None, CALL)  # returns at once, every time
    assert publisher.pending <= 5
    await asyncio.wait_for(publisher.close(timeout_s=0.3), 10)
    # one request reached the endpoint and hung; 44 fell out of the full queue; the
    # hung one and the last 5 were given up at close
    assert len(recorder.requests) == 1
    assert publisher.sent == 0 and publisher.dropped == 49 + 1
    assert not publisher.info("g", "late", None, CALL)  # closed


async def test_close_flushes_what_is_queued(recorder: Endpoint) -> None:
    recorder.delay_s = 0.01
    publisher = make_publisher(recorder.base)
    for n in range(20):
        publisher.info("g", str(n), None, CALL)
    await publisher.close(timeout_s=10)
    assert len(recorder.requests) == 20 and publisher.sent == 20


async def test_too_big_posts_are_dropped_locally(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base, max_body_bytes=2000)
    assert not publisher.info("g", "n", {"blob": "x" * 5000}, CALL)
    assert publisher.info("g", "n", {"blob": "x" * 100}, CALL)
    await publisher.close()
    assert publisher.dropped == 1 and len(recorder.requests) == 1


async def test_a_failing_default_payload_never_raises(recorder: Endpoint) -> None:
    def broken(_call: CallInfo) -> dict[str, Any]:
        raise RuntimeError("boom")

    publisher = make_publisher(recorder.base, default_payload=broken)
    assert not publisher.info("g", "n", None, CALL)
    assert publisher.dropped == 1
    await publisher.close()


def test_outside_an_event_loop_nothing_is_queued() -> None:
    publisher = make_publisher("http://127.0.0.1:9")
    assert not publisher.info("g", "n", None, CALL)
    assert publisher.dropped == 1


async def test_https_is_verified(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    endpoint = await Endpoint().start(ssl_context=server_ssl_context(cert, key))
    try:
        trusting = make_publisher(endpoint.base, ssl_context=client_ssl_context(str(cert)))
        trusting.info("g", "trusted", None, CALL)
        await trusting.close()
        errors: list[Exception] = []
        default = make_publisher(endpoint.base, on_error=errors.append)  # system trust store
        default.info("g", "untrusted", None, CALL)
        await default.close()
    finally:
        await endpoint.stop()
    assert trusting.sent == 1 and [b["name"] for b in endpoint.bodies()] == ["trusted"]
    assert default.sent == 0 and default.dropped == 1
    assert len(errors) == 1 and "certificate" in str(errors[0]).lower()


async def test_call_reporter_uses_the_current_ids_and_batches_metrics(recorder: Endpoint) -> None:
    publisher = make_publisher(recorder.base)
    ids: dict[str, str | None] = {"call_sid": None}

    def info() -> CallInfo:
        return CallInfo(call_sid=ids["call_sid"], temp_call_sid="TJS9", direction="OUTGOING")

    reporter = CallReporter(publisher, info, sdk_version="1.2.3", dscp=False)
    assert reporter.publish(events.outgoing(preflight=False, reconnect=False))
    ids["call_sid"] = "CA9"  # learnt from ringing
    assert reporter.publish(events.outgoing_ringing(True))
    assert not reporter.publish(None)  # e.g. constant input level while muted
    for second in range(23):
        reporter.sample(_sample(second), 0.1, 0.2)
    reporter.media_closed()
    reporter.media_closed()  # nothing left: no empty post
    await publisher.close()
    paths = [path for path, _, _ in recorder.requests]
    assert paths == ["/v4/EndpointEvents"] * 2 + ["/v4/EndpointMetrics"] * 3
    first, second, *metrics = recorder.bodies()
    assert "call_sid" not in first["payload"] and second["payload"]["call_sid"] == "CA9"
    assert [len(m["payload"]) for m in metrics] == [10, 10, 3]
    record = metrics[2]["payload"][2]
    assert record["timestamp"] == "1970-01-01T00:00:22.000Z"
    assert (record["call_sid"], record["dscp"], record["sdk_version"]) == ("CA9", False, "1.2.3")
    assert (record["call_volume_input"], record["call_volume_output"]) == (0.1, 0.2)


def test_a_reporter_without_publisher_does_nothing() -> None:
    reporter = CallReporter(None, CallInfo, sdk_version="1")
    assert not reporter.publish(events.connection_event("incoming"))
    reporter.sample(_sample(), 0, 0)
    reporter.media_closed()
