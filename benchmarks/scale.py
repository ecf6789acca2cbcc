"""The ``scale`` section: gateways on Redis with many devices and calls, all on 127.0.0.1.

Every figure comes from real ``softphone gateway`` processes (``--redis``, ``--no-db``,
``--log-level warn``) and a real ``redis-server``, started fresh for each
measurement and ended after it (:class:`~benchmarks.processes.Children`):

1. **Registered idle devices** (:mod:`benchmarks.scale_idle`): two generator processes
   (:mod:`benchmarks.idle_clients`: one asyncio protocol per device, the SDK's
   ``listen`` and ``register`` frames, heartbeats answered) register N devices
   spread over two gateway processes, either two gateways on their own ports
   (``--gateway-id gwA`` / ``gwB``) or ``--workers 2`` on one port. Registration
   rate (until the last ``ready``), the time until Redis holds every presence
   entry, each gateway's ``VmRSS`` and open-file delta (KiB per device),
   Redis ``used_memory`` per device, and the CPU the idle devices cost (heartbeats,
   presence refresh). The same for sockets that only did the WebSocket handshake,
   and over TLS (``wss``, a self-signed certificate).
2. **Calls set up across gateways** (:mod:`benchmarks.scale_calls`): load callers
   (:mod:`benchmarks.edge_callers`) on gateway A call ``client:loadcallee<i>``
   registered on gateway B (:mod:`benchmarks.load` callees): calls per second and
   the setup latency (to ``accept`` and to the first RTP packet), K at a time.
3. **Bridged calls kept in real time** with ``--workers 1`` and ``--workers 2``
   (:mod:`benchmarks.scale_calls`): like the ``capacity`` section but against the command, with
   the gateway's responsiveness probed from outside (``listen`` -> ``connected``
   round trips on one socket per worker) and the CPU of every process (gateway
   workers, load generators, redis-server, the whole machine) from ``/proc``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks.idle_clients import raise_fd_limit
from benchmarks.processes import Children
from benchmarks.scale_calls import (
    CapacityResult,
    EdgeCallsResult,
    capacity,
    capacity_lines,
    edge_call_lines,
    edge_calls,
)
from benchmarks.scale_idle import Registration, RegistrationResult, registration, registration_lines

Progress = Callable[[str], None]
Size = Literal["full", "quick", "tiny"]


def _quiet(_line: str) -> None:
    """The default progress sink: nothing."""


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a run does."""

    registrations: tuple[Registration, ...]
    edge_calls: tuple[tuple[int, int], ...]
    """(calls, in flight) runs."""
    capacity_workers: tuple[int, ...]
    capacity_counts: tuple[int, ...]
    idle_window_s: float = 10.0
    capacity_window_s: float = 4.0


def plan(size: Size) -> Plan:
    """The full run, ``--quick`` (1,000 devices, one capacity level) or a smoke test's."""
    if size == "tiny":
        return Plan(
            registrations=(
                Registration("pair", False, "listen", 50),
                Registration("workers", True, "listen", 50),
            ),
            edge_calls=((1, 1),),
            capacity_workers=(2,),
            capacity_counts=(1,),
            idle_window_s=1.0,
            capacity_window_s=1.0,
        )
    if size == "quick":
        return Plan(
            registrations=(
                Registration("pair", False, "listen", 1000),
                Registration("pair", False, "handshake", 1000),
                Registration("workers", False, "listen", 1000),
                Registration("pair", True, "listen", 500),
            ),
            edge_calls=((20, 5),),
            capacity_workers=(1, 2),
            capacity_counts=(20,),
            idle_window_s=5.0,
            capacity_window_s=3.0,
        )
    return Plan(
        registrations=(
            Registration("pair", False, "listen", 1000),
            Registration("pair", False, "listen", 10_000),
            Registration("pair", False, "handshake", 1000),
            Registration("pair", False, "handshake", 10_000),
            Registration("workers", False, "listen", 10_000),
            Registration("pair", True, "listen", 1000),
            Registration("pair", True, "handshake", 1000),
            Registration("pair", True, "listen", 10_000),
        ),
        edge_calls=((20, 1), (100, 10)),
        capacity_workers=(1, 2),
        capacity_counts=(10, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200),
    )


@dataclass
class ScaleReport:
    """What one run measured, and its report lines (also emitted as they came)."""

    lines: list[str] = field(default_factory=list)
    registrations: list[RegistrationResult] = field(default_factory=list)
    calls: list[EdgeCallsResult] = field(default_factory=list)
    sweeps: list[list[CapacityResult]] = field(default_factory=list)


async def run(
    size: Size,
    progress: Progress = _quiet,
    emit: Progress = _quiet,
    children: Children | None = None,
) -> ScaleReport:
    """The whole section. Each table goes to ``emit`` line by line as soon as it is
    measured. Every child process is ended on return, on error and on cancellation
    (Ctrl-C)."""
    steps = plan(size)
    children = children or Children()
    report = ScaleReport()

    def say(lines: list[str]) -> None:
        for line in lines:
            report.lines.append(line)
            emit(line)

    fd_limit = raise_fd_limit()  # the gateways and generators inherit it
    cores = os.cpu_count() or 1
    say(
        [
            "",
            f"Scale: gateways sharing Redis on 127.0.0.1 ({cores} cores, open-file limit "
            f"{fd_limit} for every process, load average {os.getloadavg()[0]:.2f} at the start)",
        ]
    )
    needed = max((r.count for r in steps.registrations), default=0) // 2 + 1024
    if fd_limit < needed:
        say(
            [
                f"WARNING: the open-file limit ({fd_limit}) is below what each gateway and "
                f"generator needs ({needed}): raise the hard limit (ulimit -Hn) first"
            ]
        )
    try:
        with tempfile.TemporaryDirectory(prefix="softphone-scale-") as tmp:
            home = Path(tmp)
            for spec in steps.registrations:
                progress(f"scale: {spec.count} idle clients, {spec.label.strip()}")
                result = await registration(spec, home, children, steps.idle_window_s)
                progress(f"scale: {result.done} done in {result.seconds:.1f} s")
                report.registrations.append(result)
            say(registration_lines(report.registrations))
            generator_kib = [
                r.generator_rss_kb / r.done
                for r in report.registrations
                if r.done and r.spec.count >= 1000
            ]
            if generator_kib:
                say(
                    [
                        f"(the generators themselves grew by {min(generator_kib):.1f}-"
                        f"{max(generator_kib):.1f} KiB per client)"
                    ]
                )
            for count, inflight in steps.edge_calls:
                progress(f"scale: {count} calls gwA -> gwB, {inflight} at a time")
                report.calls.append(await edge_calls(count, inflight, home, children))
            say(edge_call_lines(report.calls))
            for workers in steps.capacity_workers:
                report.sweeps.append(
                    await capacity(
                        workers,
                        steps.capacity_counts,
                        home,
                        children,
                        steps.capacity_window_s,
                        progress,
                    )
                )
            say(capacity_lines(report.sweeps, cores))
            say([f"(load average {os.getloadavg()[0]:.2f} at the end)"])
    finally:
        children.close()
    return report
