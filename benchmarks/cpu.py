"""Gateway CPU per bridged call-second, and how many calls one gateway keeps in real time.

The gateway runs alone in its process (:class:`GatewayProcess`); the load
devices (:mod:`benchmarks.load`) run in two more processes, callers and
callees. CPU is the gateway process' own (``getrusage``, every thread) over a
measurement window once all calls are up. "Real time" means the gateway passed
on at least 97 % of the packets the endpoints sent and its event loop's 99th
percentile lag stayed under 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.gateway_runner import LOOP_ENV
from benchmarks.harness import GatewayProcess, Path, stop_child
from softphone.media.aiortc_hooks import use_host_addresses

PACKETS_PER_CALL_SECOND = 100  # 50 packets/s each way
REAL_TIME_DELIVERY = 0.97
REAL_TIME_LAG_S = 0.030


@dataclass(frozen=True)
class CpuResult:
    """One load level."""

    path: Path
    codec: str
    calls: int
    cpu_per_call_second: float
    """Gateway CPU seconds per bridged call-second (calls x wall seconds)."""
    cpu_per_full_call_second: float
    """The same, per 100 packets/s actually bridged (corrects for endpoints falling behind)."""
    delivery: float
    """Packets received by the endpoints / packets they sent, over the window."""
    gateway_lag_p99: float
    endpoint_lag_p99: float
    gateway_cores: float
    """Gateway CPU seconds per wall second."""
    idle_cores: float
    """The same with no call at all (heartbeats, the lag probe): shared by every call."""

    @property
    def net_cpu_per_call_second(self) -> float:
        """CPU per call-second without the idle process' share."""
        return (self.gateway_cores - self.idle_cores) / self.calls

    @property
    def real_time(self) -> bool:
        return self.delivery >= REAL_TIME_DELIVERY and self.gateway_lag_p99 < REAL_TIME_LAG_S


class _Endpoints:
    """One ``benchmarks.load`` process, its reports read as they come."""

    def __init__(self, url: str, role: str, calls: int, codec: str) -> None:
        self.role = role
        self.args = [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--url",
            url,
            "--role",
            role,
            "--calls",
            str(calls),
            "--codec",
            codec,
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.reports: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"{"):  # skip stray prints of the code under test
                self.reports.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """Wait for a report (newer than the last one seen) that has ``key``."""
        seen = len(self.reports)

        async def wait() -> dict[str, Any]:
            index = seen
            while True:
                while index < len(self.reports):
                    report = self.reports[index]
                    index += 1
                    if key in report:
                        return report
                if self._reader is not None and self._reader.done():
                    raise RuntimeError(f"load process ({self.role}) exited")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        await stop_child(self.proc, self._reader, timeout=30)


async def measure(
    path: Path,
    calls: int,
    *,
    codec: str = "opus",
    callee_codec: str | None = None,
    window_s: float = 4.0,
    settle_s: float = 1.5,
) -> CpuResult:
    """Run ``calls`` bridged calls through a fresh gateway and measure over ``window_s``.

    Callers send ``codec``; callees ``callee_codec`` (default the same: the
    gateway forwards; another codec makes it transcode).
    """
    async with GatewayProcess(path) as gateway:
        idle_start = await gateway.next_report()
        for _ in range(3):
            idle_end = await gateway.next_report()
        idle_cores = (idle_end["cpu"] - idle_start["cpu"]) / (idle_end["t"] - idle_start["t"])
        callees = _Endpoints(gateway.url, "callee", calls, callee_codec or codec)
        callers = _Endpoints(gateway.url, "caller", calls, codec)
        try:
            await callees.start()
            await callees.expect("registered", 60 + calls)
            await callers.start()
            await callers.expect("up", 60 + calls)
            await callees.expect("up", 60)
            await asyncio.sleep(settle_s)
            first = await gateway.next_report()
            start_ends = [await e.expect("sent", 5) for e in (callees, callers)]
            lags: list[float] = []
            last = first
            while last["t"] - first["t"] < window_s:
                last = await gateway.next_report()
                lags.append(last["lag_p99"])
            end_ends = [await e.expect("sent", 5) for e in (callees, callers)]
        finally:
            await callers.stop()
            await callees.stop()
    wall = last["t"] - first["t"]
    cpu = last["cpu"] - first["cpu"]
    sent = sum(b["sent"] - a["sent"] for a, b in zip(start_ends, end_ends, strict=True))
    received = sum(b["received"] - a["received"] for a, b in zip(start_ends, end_ends, strict=True))
    endpoint_wall = sum(b["t"] - a["t"] for a, b in zip(start_ends, end_ends, strict=True)) / 2
    # Packets per second the gateway actually bridged, as the endpoints received them.
    bridged_rate = received / endpoint_wall if endpoint_wall > 0 else 0.0
    full_calls = bridged_rate / PACKETS_PER_CALL_SECOND
    return CpuResult(
        path=path,
        codec=codec if callee_codec in (None, codec) else f"{codec}<->{callee_codec}",
        calls=calls,
        cpu_per_call_second=cpu / (calls * wall),
        cpu_per_full_call_second=cpu / (full_calls * wall) if full_calls else float("nan"),
        delivery=received / sent if sent else 0.0,
        gateway_lag_p99=max(lags) if lags else 0.0,
        endpoint_lag_p99=max(r["lag_p99"] for r in end_ends),
        gateway_cores=cpu / wall,
        idle_cores=idle_cores,
    )


async def capacity(
    path: Path, start: int, step: int, limit: int, on_result: Any = None
) -> tuple[int | None, bool, list[CpuResult]]:
    """Raise the call count until the gateway stops keeping real time.

    Returns (largest real-time count, whether the machine (the load endpoints on
    the same cores) rather than the gateway ran out first, every result).
    """
    best: int | None = None
    results: list[CpuResult] = []
    calls = start
    while calls <= limit:
        with contextlib.suppress(asyncio.TimeoutError):
            result = await measure(path, calls, window_s=3.0)
            results.append(result)
            if on_result is not None:
                on_result(result)
            if not result.real_time:
                # A gateway below 0.9 cores had CPU to spare: the machine ran out first.
                return best, result.gateway_cores < 0.9, results
            best = calls
        calls += step
    return best, True, results


def _busy_cores(interval_s: float = 1.0) -> float:
    """Cores the whole machine kept busy over ``interval_s`` (``/proc/stat``)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(interval_s)
    total1, idle1 = sample()
    cores = os.cpu_count() or 1
    return cores * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_for_quiet_machine(max_busy_cores: float, patience_s: float = 600.0) -> None:
    """Wait (up to ``patience_s``) until other processes leave the cores mostly idle.

    On a shared machine a measurement next to someone else's load measures
    both: each run starts only when less than ``max_busy_cores`` are busy.
    """
    deadline = time.monotonic() + patience_s
    while (busy := _busy_cores()) > max_busy_cores and time.monotonic() < deadline:
        print(f"machine busy ({busy:.2f} cores): waiting", file=sys.stderr, flush=True)
        time.sleep(5)


async def _repeat(
    counts: list[int], repeat: int, codec: str, callee_codec: str | None, quiet: float | None
) -> None:
    rows: dict[int, list[CpuResult]] = {n: [] for n in counts}
    for round_ in range(repeat):
        for calls in counts:
            if quiet is not None:
                wait_for_quiet_machine(quiet)
            result = await measure("ours", calls, codec=codec, callee_codec=callee_codec)
            rows[calls].append(result)
            print(
                f"[run {round_ + 1}/{repeat}] {calls:3d} calls: "
                f"{result.cpu_per_call_second:.4f} CPU-s per call-second "
                f"(full {result.cpu_per_full_call_second:.4f}, net "
                f"{result.net_cpu_per_call_second:.4f}, {result.gateway_cores:.2f} cores, "
                f"delivery {result.delivery * 100:.1f} %, lag p99 "
                f"{result.gateway_lag_p99 * 1000:.1f} ms)",
                file=sys.stderr,
                flush=True,
            )
    loop = os.environ.get(LOOP_ENV, "asyncio")
    codecs = f"{codec}->{callee_codec or codec}"
    print(f"gateway loop: {loop}; median of {repeat} run(s); codec {codecs}")
    print("calls  CPU/call  CPU/full  net/call  cores  deliv.%   runs (CPU/call)")
    for calls, results in rows.items():
        runs = " ".join(f"{r.cpu_per_call_second:.4f}" for r in results)
        print(
            f"{calls:5d} {statistics.median(r.cpu_per_call_second for r in results):9.4f} "
            f"{statistics.median(r.cpu_per_full_call_second for r in results):9.4f} "
            f"{statistics.median(r.net_cpu_per_call_second for r in results):9.4f} "
            f"{statistics.median(r.gateway_cores for r in results):6.2f} "
            f"{statistics.median(r.delivery for r in results) * 100:7.1f}   {runs}"
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.cpu``: the cpu section alone, at chosen call counts, repeated."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cpu",
        description="Gateway CPU per bridged call-second (ours), medians of repeated runs.",
    )
    parser.add_argument("--calls", default="1,10,50", help="comma-separated call counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per count (median reported)")
    parser.add_argument("--codec", choices=("opus", "pcmu"), default="opus")
    parser.add_argument("--callee-codec", choices=("opus", "pcmu"), default=None)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=os.environ.get(LOOP_ENV, "asyncio"),
        help=f"the gateway's event loop (sets ${LOOP_ENV} for the gateway process)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=None,
        metavar="CORES",
        help="before each run wait until the machine has fewer than CORES busy",
    )
    args = parser.parse_args(argv)
    os.environ[LOOP_ENV] = args.loop
    counts = [int(n) for n in args.calls.split(",") if n.strip()]
    use_host_addresses(["127.0.0.1"])
    asyncio.run(_repeat(counts, args.repeat, args.codec, args.callee_codec, args.quiet))


if __name__ == "__main__":
    main()
