"""Scale, part 1: thousands of idle devices registered on two gateway processes.

Two generator processes (:mod:`benchmarks.idle_clients`) register N devices
spread over two gateway processes sharing Redis (two gateways on their own
ports, or ``--workers 2`` on one port), or only open N WebSocket connections
(``handshake``) for comparison, over ws or wss. Measured: the registration rate
(until the last ``ready``), the time until Redis holds every presence entry,
each gateway process' ``VmRSS`` and open-file growth (KiB per connection), Redis
``used_memory`` per device, and the CPU the idle devices cost afterwards
(heartbeats every 5 s, presence refresh).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.processes import Children, cpu_seconds, fd_count, rss_kb
from benchmarks.scale_cluster import START_TIMEOUT_S, Gateways, Generator, Layout, Redis

GENERATORS = 2
"""Load generator processes for the idle devices."""


@dataclass(frozen=True)
class Registration:
    """What one registration measurement asks for."""

    layout: Layout
    tls: bool
    mode: Literal["listen", "handshake"]
    count: int

    @property
    def label(self) -> str:
        where = "2 gateways" if self.layout == "pair" else "--workers 2"
        what = "registered" if self.mode == "listen" else "handshake only"
        return f"{where:11} {'wss' if self.tls else 'ws':3} {what:14}"


@dataclass(frozen=True)
class GatewayMemory:
    """One gateway process: connections it took and its memory growth."""

    gateway_id: str
    connections: int
    rss_delta_kb: int
    idle_cores: float
    register_cpu_s: float
    """CPU seconds the process spent while the clients connected (and registered)."""

    @property
    def cpu_ms_per_connection(self) -> float:
        return self.register_cpu_s * 1000 / self.connections if self.connections else float("nan")

    @property
    def kib_per_connection(self) -> float:
        return self.rss_delta_kb / self.connections if self.connections else float("nan")


@dataclass(frozen=True)
class RegistrationResult:
    """One registration measurement."""

    spec: Registration
    done: int
    failed: int
    seconds: float
    presence_seconds: float | None
    gateways: list[GatewayMemory]
    redis_bytes: int
    redis_cores: float
    generator_rss_kb: int
    """How much the generators grew opening the clients (KiB, all of them)."""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else float("nan")


async def _presence_complete(redis: Redis, identities: list[str], started: float) -> float | None:
    """Seconds from ``started`` until every identity is present in Redis (None: 60 s passed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await redis.presence_count(identities) == len(identities):
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def registration(
    spec: Registration, home: Path, children: Children, idle_window_s: float
) -> RegistrationResult:
    """Register (or just connect) ``spec.count`` idle clients and measure the gateways."""
    redis = await Redis(children).start()
    generators: list[Generator] = []
    try:
        gateways = await Gateways(spec.layout, 2, spec.tls, redis, children, home).start()
        await asyncio.sleep(1.0)  # past startup: imports done, first presence refresh
        rss_before = {g: rss_kb(pid) for g, pid in gateways.pids.items()}
        fds_before = {g: fd_count(pid) for g, pid in gateways.pids.items()}
        redis_before = await redis.used_memory()
        per_generator = spec.count // GENERATORS
        counts = [per_generator] * GENERATORS
        counts[-1] += spec.count - sum(counts)
        for index, count in enumerate(counts):
            generator = Generator(children)
            args = ["--count", str(count), "--first", str(index * per_generator)]
            args += ["--mode", spec.mode, *itertools.chain(*(("--url", u) for u in gateways.urls))]
            if gateways.cafile:
                args += ["--cafile", gateways.cafile]
            await generator.start(*args)
            generators.append(generator)
        for generator in generators:
            await generator.expect("armed", START_TIMEOUT_S)
        cpu_at_go = gateways.cpu()
        for generator in generators:
            generator.go()
        finals = [await g.expect("done", 120 + spec.count / 50) for g in generators]
        cpu_at_done = gateways.cpu()
        t_first = min(f["t_first"] for f in finals)
        seconds = max(f["t_last"] for f in finals) - t_first
        presence_s = None
        if spec.mode == "listen":
            identities = [f"idle{i}" for i in range(spec.count)]
            presence_s = await _presence_complete(redis, identities, t_first)
        await asyncio.sleep(2.0)  # let the last frames and presence writes settle
        # memory first: sockets that never send listen are closed after 30 s
        connections = {g: fd_count(pid) - fds_before[g] for g, pid in gateways.pids.items()}
        rss_delta = {g: rss_kb(pid) - rss_before[g] for g, pid in gateways.pids.items()}
        redis_bytes = await redis.used_memory() - redis_before
        cpu_before = gateways.cpu()
        redis_cpu_before = cpu_seconds(redis.pid)
        await asyncio.sleep(idle_window_s)
        cpu_after = gateways.cpu()
        redis_cores = (cpu_seconds(redis.pid) - redis_cpu_before) / idle_window_s
        memory = [
            GatewayMemory(
                gateway_id=g,
                connections=connections[g],
                rss_delta_kb=rss_delta[g],
                idle_cores=(cpu_after[g] - cpu_before[g]) / idle_window_s,
                register_cpu_s=cpu_at_done[g] - cpu_at_go[g],
            )
            for g in gateways.pids
        ]
        generator_rss = 0
        for generator in generators:
            sizes = [line["rss_kb"] for line in generator.lines if "rss_kb" in line]
            generator_rss += sizes[-1] - sizes[0]  # after the clients minus before them
        return RegistrationResult(
            spec=spec,
            done=sum(f["done"] for f in finals),
            failed=sum(f["failed"] for f in finals),
            seconds=seconds,
            presence_seconds=presence_s,
            gateways=memory,
            redis_bytes=redis_bytes,
            redis_cores=redis_cores,
            generator_rss_kb=generator_rss,
        )
    finally:
        for generator in generators:
            await generator.stop()
        await redis.close()
        children.close()


def registration_lines(results: Sequence[RegistrationResult]) -> list[str]:
    """The registration table."""
    header = (
        "layout      TLS kind           devices  done fail   secs  rate/s presence-s "
        "| per gateway process: conns KiB/conn CPU-ms/conn idle-cores | Redis B/dev idle-cores"
    )
    lines = [
        "",
        "Idle devices spread over 2 gateway processes sharing Redis (2 generator processes;",
        "'registered' = listen + register answered by ready; 'handshake only' = a socket that",
        "never sent listen; KiB/conn = gateway VmRSS growth / sockets it holds; CPU-ms/conn =",
        "gateway CPU while they connected / sockets; idle-cores = CPU of each gateway (and of",
        "redis-server) while the devices only answer heartbeats (every 5 s))",
        header,
        "-" * len(header),
    ]
    for r in results:
        presence = f"{r.presence_seconds:10.2f}" if r.presence_seconds is not None else "       n/a"
        per_gateway = "; ".join(
            f"{g.gateway_id} {g.connections} {g.kib_per_connection:.1f} "
            f"{g.cpu_ms_per_connection:.2f} {g.idle_cores:.3f}"
            for g in r.gateways
        )
        per_device = r.redis_bytes / r.done if r.done and r.spec.mode == "listen" else None
        redis_column = f"{per_device:.0f}" if per_device is not None else "n/a"
        lines.append(
            f"{r.spec.label} {r.spec.count:6d} {r.done:5d} {r.failed:4d} {r.seconds:6.2f} "
            f"{r.rate:7.0f} {presence} | {per_gateway} | {redis_column} {r.redis_cores:.3f}"
        )
    return lines
