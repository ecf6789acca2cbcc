"""Scale, parts 2 and 3: calls set up across gateways, and calls kept with 1 and 2 workers.

* :func:`edge_calls`: load callers (:mod:`benchmarks.edge_callers`) on gateway A
  call ``client:loadcallee<i>`` registered on gateway B (:mod:`benchmarks.load`
  callees): calls per second and setup latency, K at a time.
* :func:`capacity`: like the ``capacity`` section, but against ``softphone gateway
  --workers N --redis``: ``softphone gateway`` reports no loop lag, so each
  worker's responsiveness is probed from outside (:class:`ResponsivenessProbe`),
  and the CPU of every process (workers, load generators, redis-server, the whole
  machine) is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cpu import REAL_TIME_DELIVERY, REAL_TIME_LAG_S, _Endpoints
from benchmarks.harness import token
from benchmarks.processes import Children, cpu_seconds, machine_busy_seconds
from benchmarks.scale_cluster import Gateways, Redis
from benchmarks.wire import WireClient
from softphone.signaling.messages import Listen, Register

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EdgeCallsResult:
    """Calls from devices on gateway A to devices on gateway B."""

    calls: int
    inflight: int
    failed: int
    seconds: float
    setup: list[float]
    media: list[float]
    gateway_cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return len(self.setup) / self.seconds if self.seconds > 0 else float("nan")


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))] if ordered else float("nan")


async def _wait_presence(redis: Redis, identities: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await redis.presence_count(identities) < len(identities):
        if time.monotonic() > deadline:
            raise RuntimeError("the callees never all appeared in Redis")
        await asyncio.sleep(0.05)


async def edge_calls(calls: int, inflight: int, home: Path, children: Children) -> EdgeCallsResult:
    """``calls`` calls from gateway A's devices to gateway B's, ``inflight`` at a time."""
    redis = await Redis(children).start()
    callees: _Endpoints | None = None
    try:
        gateways = await Gateways("pair", 2, False, redis, children, home).start()
        url_a, url_b = gateways.urls
        callees = _Endpoints(url_b, "callee", calls, "opus")
        await callees.start()
        assert callees.proc is not None
        children.async_procs.append(callees.proc)
        await callees.expect("registered", 60 + calls)
        await _wait_presence(redis, [f"loadcallee{i}" for i in range(calls)], 30)
        cpu_before = gateways.cpu()
        callers = await children.exec(
            sys.executable,
            "-m",
            "benchmarks.edge_callers",
            *("--url", url_a, "--calls", str(calls), "--inflight", str(inflight)),
            stdout=asyncio.subprocess.PIPE,
        )
        assert callers.stdout is not None
        result: dict[str, Any] | None = None
        async with asyncio.timeout(120 + calls):
            while line := await callers.stdout.readline():
                if line.startswith(b"{"):
                    result = json.loads(line)
            await callers.wait()
        if result is None:
            raise RuntimeError("the edge callers printed no result")
        cpu_after = gateways.cpu()
        return EdgeCallsResult(
            calls=calls,
            inflight=inflight,
            failed=int(result["failed"]),
            seconds=float(result["t_last"] - result["t_first"]),
            setup=list(result["setup"]),
            media=list(result["media"]),
            gateway_cpu={g: cpu_after[g] - cpu_before[g] for g in cpu_after},
        )
    finally:
        if callees is not None:
            await callees.stop()
        await redis.close()
        children.close()


def edge_call_lines(results: Sequence[EdgeCallsResult]) -> list[str]:
    """The cross-gateway call setup table."""
    header = (
        "calls in-flight failed  calls/s | to accept ms: median  p90 | to first RTP ms: "
        "median  p90 | gateway CPU ms/call A  B"
    )
    lines = [
        "",
        "Calls set up across gateways: load callers on gwA call client:loadcallee<i> registered",
        "on gwB (Redis ring, gateway-to-gateway media leg); each call hung up once the caller",
        "received its first RTP packet; CPU per call includes the callers' registration",
        header,
        "-" * len(header),
    ]
    for r in results:
        cpu = "  ".join(f"{r.gateway_cpu[g] * 1000 / r.calls:5.1f}" for g in sorted(r.gateway_cpu))
        setup_med = statistics.median(r.setup) * 1000 if r.setup else float("nan")
        media_med = statistics.median(r.media) * 1000 if r.media else float("nan")
        lines.append(
            f"{r.calls:5d} {r.inflight:9d} {r.failed:6d} {r.rate:8.1f} | "
            f"{setup_med:19.1f} {_p90(r.setup) * 1000:5.1f} | "
            f"{media_med:22.1f} {_p90(r.media) * 1000:5.1f} | {cpu:>25}"
        )
    return lines


# -- 3. bridged calls kept in real time with 1 and 2 workers ------------------------------


class ResponsivenessProbe:
    """One socket per gateway worker sending ``listen`` and timing the ``connected`` reply.

    ``softphone gateway`` reports no loop lag, so it is measured from outside: a worker
    whose event loop is late answers late. Which worker a socket landed on is read
    from Redis presence (the probe registers under its own identity).
    """

    INTERVAL_S = 0.05

    def __init__(self, url: str, redis: Redis, gateway_ids: Iterable[str]) -> None:
        self.url = url
        self.redis = redis
        self.wanted = set(gateway_ids)
        self.clients: dict[str, tuple[WireClient, str]] = {}
        self.rtts: dict[str, list[float]] = {}
        self._spare: list[WireClient] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for k in range(40):
            if set(self.clients) == self.wanted:
                break
            identity = f"probe{k}"
            client = await WireClient(self.url, token(identity)).start()
            await client.send(Register.presence(True))
            await client.wait_for("ready")
            where: list[str] = []
            for _ in range(100):
                if where := await self.redis.gateways_of(identity):
                    break
                await asyncio.sleep(0.02)
            if where and where[0] not in self.clients:
                self.clients[where[0]] = (client, identity)
            else:
                self._spare.append(client)
        for gateway_id, (client, identity) in self.clients.items():
            self.rtts[gateway_id] = []
            self._tasks.append(asyncio.ensure_future(self._probe(gateway_id, client, identity)))

    async def _probe(self, gateway_id: str, client: WireClient, identity: str) -> None:
        listen = Listen(token=token(identity), reconnect_timeout=0)
        while True:
            count = len(client.of_type("connected"))
            started = time.monotonic()
            await client.send(listen)
            await client.wait_for("connected", count + 1, timeout=30)
            self.rtts[gateway_id].append(time.monotonic() - started)
            await asyncio.sleep(self.INTERVAL_S)

    def restart_window(self) -> None:
        for values in self.rtts.values():
            values.clear()

    def p99(self) -> dict[str, float]:
        """The 99th percentile round trip per worker since :meth:`restart_window`."""
        return {
            g: sorted(v)[int(0.99 * (len(v) - 1))] if v else float("nan")
            for g, v in self.rtts.items()
        }

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in [c for c, _ in self.clients.values()] + self._spare:
            with contextlib.suppress(Exception):
                await client.stop()


@dataclass(frozen=True)
class CapacityResult:
    """One load level against ``softphone gateway --workers N``."""

    workers: int
    calls: int
    up: bool
    """Whether every call was set up (False: the level failed before measuring)."""
    delivery: float = 0.0
    probe_p99: dict[str, float] = field(default_factory=dict)
    endpoint_lag_p99: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    """CPU per wall second of each process group, and of the whole machine."""

    @property
    def gateway_cores(self) -> float:
        return sum(v for k, v in self.cores.items() if k.startswith("gw"))

    @property
    def real_time(self) -> bool:
        worst = max(self.probe_p99.values(), default=float("inf"))
        return self.up and self.delivery >= REAL_TIME_DELIVERY and worst < REAL_TIME_LAG_S


async def capacity_level(
    workers: int, calls: int, home: Path, children: Children, window_s: float
) -> CapacityResult:
    """``calls`` bridged calls through ``softphone gateway --workers N``, measured."""
    redis = await Redis(children).start()
    endpoints: list[_Endpoints] = []
    probe: ResponsivenessProbe | None = None
    try:
        gateways = await Gateways("workers", workers, False, redis, children, home).start()
        (url,) = gateways.urls
        probe = ResponsivenessProbe(url, redis, gateways.pids)
        await probe.start()
        callees = _Endpoints(url, "callee", calls, "opus")
        callers = _Endpoints(url, "caller", calls, "opus")
        endpoints += [callees, callers]
        await callees.start()
        assert callees.proc is not None
        children.async_procs.append(callees.proc)
        try:
            await callees.expect("registered", 60 + calls)
            await _wait_presence(redis, [f"loadcallee{i}" for i in range(calls)], 30)
            await callers.start()
            assert callers.proc is not None
            children.async_procs.append(callers.proc)
            await callers.expect("up", 60 + calls)
            await callees.expect("up", 60)
        except (TimeoutError, RuntimeError):
            return CapacityResult(workers=workers, calls=calls, up=False)
        await asyncio.sleep(1.5)
        pids = {**gateways.pids, "redis": redis.pid}
        if gateways.supervisor is not None and workers > 1:
            pids["supervisor"] = gateways.supervisor
        assert callers.proc is not None and callees.proc is not None
        pids |= {"callers": callers.proc.pid, "callees": callees.proc.pid, "bench": os.getpid()}
        start_ends = [await e.expect("sent", 5) for e in endpoints]
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        machine_before, wall_before = machine_busy_seconds(), time.monotonic()
        probe.restart_window()
        await asyncio.sleep(window_s)
        wall = time.monotonic() - wall_before
        cores = {name: (cpu_seconds(pid) - cpu_before[name]) / wall for name, pid in pids.items()}
        cores["machine"] = (machine_busy_seconds() - machine_before) / wall
        probe_p99 = probe.p99()
        end_ends = [await e.expect("sent", 5) for e in endpoints]
        pairs = list(zip(start_ends, end_ends, strict=True))
        sent = sum(b["sent"] - a["sent"] for a, b in pairs)
        received = sum(b["received"] - a["received"] for a, b in pairs)
        return CapacityResult(
            workers=workers,
            calls=calls,
            up=True,
            delivery=received / sent if sent else 0.0,
            probe_p99=probe_p99,
            endpoint_lag_p99=max(b["lag_p99"] for _, b in pairs),
            cores=cores,
        )
    finally:
        if probe is not None:
            await probe.stop()
        for endpoint in reversed(endpoints):
            await endpoint.stop()
        await redis.close()
        children.close()


async def capacity(
    workers: int,
    counts: Iterable[int],
    home: Path,
    children: Children,
    window_s: float,
    progress: Progress,
) -> list[CapacityResult]:
    """Raise the call count until the gateway stops keeping real time."""
    results: list[CapacityResult] = []
    for calls in counts:
        progress(f"scale: capacity, --workers {workers}, {calls} calls")
        result = await capacity_level(workers, calls, home, children, window_s)
        results.append(result)
        state = "real time" if result.real_time else "NOT real time"
        progress(f"scale: {calls} calls: {state} (gateway {result.gateway_cores:.2f} cores)")
        if not result.real_time:
            break
    return results


def capacity_lines(sweeps: Sequence[list[CapacityResult]], cores: int) -> list[str]:
    """The capacity table and the verdict of each sweep."""
    header = (
        "workers calls deliv.% probe-p99 ms (per worker) | CPU cores: gateway workers | "
        "callers callees redis bench | machine  RT"
    )
    lines = [
        "",
        "Bridged calls (Opus forwarded) through softphone gateway --workers N --redis, load",
        "endpoints in 2 processes (benchmarks.load); callers and callees land on any worker,",
        "so with 2 workers about half the calls cross workers through Redis; real time = "
        f"delivery >= {REAL_TIME_DELIVERY * 100:.0f} % and every worker's listen->connected "
        f"p99 < {REAL_TIME_LAG_S * 1000:.0f} ms",
        header,
        "-" * len(header),
    ]
    for sweep in sweeps:
        for r in sweep:
            if not r.up:
                lines.append(f"{r.workers:7d} {r.calls:5d}  calls could not all be set up")
                continue
            probes = " ".join(f"{v * 1000:.1f}" for _, v in sorted(r.probe_p99.items()))
            workers_cpu = " ".join(
                f"{r.cores[g]:.2f}" for g in sorted(r.cores) if g.startswith("gw")
            )
            if "supervisor" in r.cores:
                workers_cpu += f" (+sup {r.cores['supervisor']:.2f})"
            lines.append(
                f"{r.workers:7d} {r.calls:5d} {r.delivery * 100:7.1f} {probes:>26} | "
                f"{workers_cpu:>26} | {r.cores['callers']:7.2f} {r.cores['callees']:7.2f} "
                f"{r.cores['redis']:5.2f} {r.cores['bench']:5.2f} | {r.cores['machine']:7.2f}"
                f"  {'yes' if r.real_time else 'no'}"
            )
    for sweep in sweeps:
        if not sweep:
            continue
        kept = [r.calls for r in sweep if r.real_time]
        best = max(kept) if kept else None
        last = sweep[-1]
        if last.real_time:
            verdict = "still real time at the largest level tried: a lower bound"
        elif (
            last.up
            and last.gateway_cores < 0.9 * last.workers
            and last.cores["machine"] > (0.85 * cores)
        ):
            verdict = (
                f"the machine ran out first ({last.cores['machine']:.2f} of {cores} cores busy, "
                f"the gateway workers {last.gateway_cores:.2f}): a lower bound"
            )
        else:
            verdict = "the gateway workers ran out of CPU"
        lines.append(
            f"--workers {last.workers}: largest number of calls kept in real time: {best} "
            f"({verdict})"
        )
    return lines
