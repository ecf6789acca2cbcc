"""One gateway in its own process for the benchmarks, reporting CPU and loop lag.

``python -m benchmarks.gateway_runner --path ours|aiortc`` starts a gateway on
127.0.0.1, prints one JSON line ``{"url": ...}`` when ready, then a JSON line
every 0.5 s: process CPU seconds (all threads, from ``getrusage``), the
monotonic time, the 99th percentile event-loop lag of the last interval, the
live calls and the bridge packet counters. It stops when stdin closes.
``--loop uvloop`` (or ``SOFTPHONE_BENCH_LOOP=uvloop``) runs it on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.media.aiortc_hooks import use_host_addresses

LAG_PROBE_S = 0.05
"""How often the event-loop lag is sampled (rarely enough to cost nothing measurable)."""
REPORT_S = 0.5
LOOP_ENV = "SOFTPHONE_BENCH_LOOP"
"""Set to ``uvloop`` to measure the gateway on uvloop (``python -m benchmarks`` passes it on)."""


def cpu_seconds() -> float:
    """User plus system CPU time of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bridge_counters(gateway: Gateway) -> dict[str, int]:
    received = forwarded = direct = transcoded = 0
    for call in gateway.calls.calls:
        bridge: Any = getattr(call, "bridge", None)
        for direction in bridge.stats() if bridge is not None else []:
            received += direction.received
            forwarded += direction.forwarded
            direct += direction.sent_directly
            transcoded += direction.transcoded_out
    return {
        "received": received,
        "forwarded": forwarded,
        "sent_directly": direct,
        "transcoded": transcoded,
    }


async def _serve(path: str) -> None:
    leg_media = None
    if path == "aiortc":
        from benchmarks.baseline import install_gateway_baseline

        leg_media = install_gateway_baseline()
    use_host_addresses(["127.0.0.1"])
    config = GatewayConfig(port=0, heartbeat_interval_s=5.0)
    gateway = Gateway(AccountStore.dev(), config, leg_media=leg_media)
    await gateway.start()
    print(json.dumps({"url": gateway.url}), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        await reader.read()
        stdin_closed.set()

    watcher = asyncio.ensure_future(watch_stdin())
    lags: list[float] = []
    next_report = loop.time() + REPORT_S
    while not stdin_closed.is_set():
        before = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(loop.time() - before - LAG_PROBE_S)
        if loop.time() >= next_report:
            lags.sort()
            report = {
                "cpu": cpu_seconds(),
                "t": time.monotonic(),
                "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
                "calls": len(gateway.calls.calls),
                **_bridge_counters(gateway),
            }
            print(json.dumps(report), flush=True)
            lags.clear()
            next_report += REPORT_S
    watcher.cancel()
    await gateway.stop()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", choices=("ours", "aiortc"), default="ours")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=os.environ.get(LOOP_ENV, "asyncio"),
        help=f"event loop (default: ${LOOP_ENV}, else asyncio; uvloop is an optional extra)",
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(args.path))
    else:
        asyncio.run(_serve(args.path))


if __name__ == "__main__":
    main()
