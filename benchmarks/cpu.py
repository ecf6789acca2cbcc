"""Gateway CPU per bridged call-second, and how many calls one gateway keeps in real time.

The gateway runs alone in its process (:class:`GatewayProcess`); the load
devices (:mod:`benchmarks.load`) run in two more processes, callers and
callees. CPU is the gateway process' own (``getrusage``, every thread) over a
measurement window once all calls are up. "Real time" means the gateway passed
on at least 97 % of the packets the endpoints sent and its event loop's 99th
percentile lag stayed under 30 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import GatewayProcess, Path, stop_child

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
