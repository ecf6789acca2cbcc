"""Insights: what publishing costs a call, and what storing it costs the gateway.

Runs ``softphone gateway --no-tls --api-port P`` in its own process and, in this one,
the real :class:`~softphone.insights.publisher.EventPublisher`:

* the time one ``publisher.info(...)`` call takes in the caller (building the JS
  envelope and queueing it: what a Call pays per event), with a live endpoint and
  with an unreachable one;
* end-to-end throughput into the gateway's store: events (a realistic ~0.7 KB
  ``ice-candidate`` event, one publisher posting in order);
* the store alone (in this process): events and metrics records kept per second;
* the gateway's resident memory while one account posts far more than the store
  keeps (bodies of 30 KB): its growth stays near the per-account bound (32 MiB);
* an unreachable endpoint: connection attempts made for 1000 events, and how long
  ``close()`` takes.

``python -m benchmarks.insights [--quick]``; :func:`run` returns the report lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable

from benchmarks.harness import token
from benchmarks.wire import HOST, GatewayChild, free_port
from softphone.gateway.accounts import DEV_ACCOUNT_SID
from softphone.gateway.insights_store import InsightsLimits, InsightsStore, Poster
from softphone.insights import events
from softphone.insights.events import CallInfo, SessionInfo
from softphone.insights.publisher import EventPublisher
from softphone.version import __version__

SESSION = SessionInfo(sdk_version=__version__, gateway="gw", region="LOOPBACK")
CANDIDATE = {
    "type": "host",
    "ip": "192.0.2.10",
    "port": 54321,
    "priority": 2130706431,
    "protocol": "udp",
    "sdpMid": "0",
}


def _publisher(base: str, **kwargs: object) -> EventPublisher:
    return EventPublisher(
        token("bench"),
        host=base,
        default_payload=lambda call: events.default_payload(SESSION, call),
        max_queue=100_000,
        **kwargs,  # type: ignore[arg-type]
    )


def _call(n: int) -> CallInfo:
    return CallInfo(temp_call_sid=f"TJSbench{n // 100:06d}", direction="OUTGOING", codec="opus")


def _sample(second: int) -> dict[str, object]:
    totals = {
        "bytesReceived": 8000 * second,
        "bytesSent": 8000 * second,
        "packetsLost": 0,
        "packetsLostFraction": 0,
        "packetsReceived": 50 * second,
        "packetsSent": 50 * second,
    }
    return {
        "audioInputLevel": 1200,
        "audioOutputLevel": 2400,
        "bytesReceived": 8000,
        "bytesSent": 8000,
        "codecName": "opus",
        "jitter": 2,
        "mos": 4.37,
        "packetsLost": 0,
        "packetsLostFraction": 0,
        "packetsReceived": 50,
        "packetsSent": 50,
        "rtt": 14,
        "timestamp": 1_700_000_000_000 + second * 1000,
        "totals": totals,
        "inputVolume": 0.3,
        "outputVolume": 0.4,
    }


def _time_posts(publisher: EventPublisher, count: int) -> list[float]:
    """Seconds each synchronous ``info`` call took."""
    event = events.ice_candidate(CANDIDATE)
    durations = []
    for n in range(count):
        start = time.perf_counter()
        publisher.publish(event, _call(n))
        durations.append(time.perf_counter() - start)
    return durations


class _OneCall:
    def owner_of(self, sid: str) -> str | None:
        return DEV_ACCOUNT_SID if sid == "CA1" else None


def _store_rates(count: int) -> list[str]:
    """Events and metrics records the store keeps per second (no HTTP)."""
    store = InsightsStore(_OneCall())
    poster = Poster(DEV_ACCOUNT_SID, "bench")
    call = CallInfo(call_sid="CA1", temp_call_sid="TJS1", direction="OUTGOING")
    payload = {**events.default_payload(SESSION, call), **events.ice_candidate_payload(CANDIDATE)}
    event = events.to_json(
        events.envelope("debug", "ice-candidate", "ice-candidate", payload, now=0)
    )
    fields = events.metrics_fields(
        call_sid="CA1", dscp=True, sdk_version=__version__, direction="OUTGOING"
    )
    records = [{**events.metric_record(_sample(s)), **fields} for s in range(10)]
    batch = events.to_json(
        events.envelope("info", events.METRICS_GROUP, events.METRICS_NAME, records, now=0)
    )
    start = time.perf_counter()
    for n in range(count):
        store.add_event(poster, event, now=n)
    event_rate = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(count // 10):
        store.add_metrics(poster, batch, now=n)
    sample_rate = count / (time.perf_counter() - start)
    return [
        f"store alone: {event_rate:.0f} events/s ({len(event)} B each), {sample_rate:.0f} "
        f"metrics records/s (batches of 10, {len(batch)} B each)"
    ]


async def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def _us(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e6:.0f} us, max {max(values) * 1e6:.0f} us"


async def run(quick: bool = False, progress: Callable[[str], None] = print) -> list[str]:
    """Measure everything; return the report lines."""
    lines: list[str] = []
    events_count = 1000 if quick else 5000
    api_port = free_port()
    async with GatewayChild(None, "--api-port", str(api_port)) as gateway:
        await _wait_port(api_port)
        base = f"http://{HOST}:{api_port}"

        progress(f"insights: {events_count} events into the gateway")
        publisher = _publisher(base)
        start = time.perf_counter()
        durations = _time_posts(publisher, events_count)
        await publisher.flush(300)
        elapsed = time.perf_counter() - start
        lines.append(
            f"publish() in the caller, live endpoint: {_us(durations)} ({events_count} events)"
        )
        lines.append(
            f"events into the store: {publisher.sent} of {events_count} in {elapsed:.2f} s "
            f"= {publisher.sent / elapsed:.0f} events/s (one publisher, posts in order)"
        )

        await publisher.close()

        progress("insights: memory while one account posts far more than the store keeps")
        limit = InsightsLimits().max_account_bytes
        posts = 1500 if quick else 4000
        flooder = _publisher(base)
        before = gateway.rss_kb()
        pad = {"pad": "x" * 30_000}
        peak = before
        for n in range(posts):
            flooder.info("bench", "flood", pad, _call(n))
            if n % 200 == 199:
                await flooder.flush(300)
                peak = max(peak, gateway.rss_kb())
        await flooder.close(300)
        after = gateway.rss_kb()
        peak = max(peak, after)
        posted_mib = posts * 30_000 / 2**20
        lines.append(
            f"gateway RSS while one account posts {posted_mib:.0f} MiB of events "
            f"(bound {limit / 2**20:.0f} MiB per account): {before / 1024:.0f} -> "
            f"{after / 1024:.0f} MiB (peak {peak / 1024:.0f} MiB); {flooder.sent} stored or "
            f"evicted, {flooder.refused} refused"
        )

    progress("insights: the store alone")
    lines.extend(_store_rates(20_000 if quick else 100_000))

    progress("insights: unreachable endpoint")
    errors: list[Exception] = []
    dead = _publisher(f"http://{HOST}:{free_port()}", on_error=errors.append)
    durations = _time_posts(dead, 1000)
    start = time.perf_counter()
    await dead.close(timeout_s=5)
    closing = time.perf_counter() - start
    lines.append(
        f"publish() in the caller, unreachable endpoint: {_us(durations)}; 1000 events: "
        f"{len(errors)} connection attempt(s), {dead.dropped} dropped, "
        f"close() {closing * 1000:.0f} ms"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lines = asyncio.run(run(args.quick, lambda m: print(m, file=sys.stderr, flush=True)))
    print("\nInsights (publisher in this process, gateway in its own)")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
