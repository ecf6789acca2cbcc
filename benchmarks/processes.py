"""Child processes of the scale benchmark: started, measured through ``/proc``, always ended.

* :class:`Children` starts every process of a run (gateways, redis-server, load
  generators) so that none outlives it: each child gets ``PR_SET_PDEATHSIG``
  (it is sent SIGTERM if the benchmark dies, even by SIGKILL) and
  :meth:`Children.close` terminates, then kills, whatever is still running,
  including grandchildren registered by pid (``softphone gateway --workers``'
  workers), which are checked by their start time so that a reused pid is
  never signalled.
* :func:`cpu_seconds`, :func:`rss_kb`, :func:`fd_count`, :func:`machine_busy_seconds`
  read another process' (or the whole machine's) CPU time, memory and open files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 10.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the benchmark process goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` fields from the third (state) on: the name may hold spaces."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot); None when there is no such process."""
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all its threads), 0 once it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` (``VmRSS``), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class Children:
    """Every process one benchmark run started, ended by :meth:`close` whatever happens."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.async_procs: list[asyncio.subprocess.Process] = []
        self.adopted: dict[int, int | None] = {}
        """Grandchildren (pid -> start time) started by one of ours, ended with them."""

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen`` that dies with us."""
        proc = subprocess.Popen(args, preexec_fn=_die_with_parent, **kwargs)
        self.popens.append(proc)
        return proc

    async def exec(self, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """``asyncio.create_subprocess_exec`` that dies with us."""
        proc = await asyncio.create_subprocess_exec(
            *args,
            preexec_fn=_die_with_parent,
            **kwargs,
        )
        self.async_procs.append(proc)
        return proc

    def adopt(self, pid: int) -> None:
        """End ``pid`` (a child of one of ours) with the others."""
        self.adopted[pid] = start_time(pid)

    def _alive_adopted(self) -> list[int]:
        return [pid for pid, started in self.adopted.items() if start_time(pid) == started]

    def alive(self) -> list[int]:
        """Pids of the processes started here that are still running."""
        pids = [p.pid for p in self.popens if p.poll() is None]
        pids += [p.pid for p in self.async_procs if p.returncode is None and _running(p.pid)]
        return pids + self._alive_adopted()

    def close(self) -> None:
        """SIGTERM to everything still running, SIGKILL to what is left after a while."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.popens:
                if p.poll() is None:
                    p.send_signal(sig)
            for a in self.async_procs:
                if a.returncode is None and _running(a.pid):
                    with contextlib.suppress(ProcessLookupError):
                        a.send_signal(sig)
            for pid in self._alive_adopted():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.alive() and time.monotonic() < deadline:
                for p in self.popens:
                    p.poll()
                time.sleep(0.05)
            if not self.alive():
                break
        for p in self.popens:
            if p.poll() is None:
                p.wait()


def _running(pid: int) -> bool:
    """Whether ``pid`` (a child of ours not yet reaped by asyncio) is still running."""
    try:
        state = _stat_fields(pid)[0]
    except OSError:
        return False
    return state not in ("Z", "X")
