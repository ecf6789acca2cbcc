"""``softphone gateway --workers N``: N gateway processes sharing one port and one Redis.

What: :func:`plan` says what each worker is (its cluster id ``<base>-w<i>`` and its own
call-store file), :func:`supervise` runs them: it starts one process per worker,
forwards SIGINT/SIGTERM to them, stops the rest when one dies, and returns the exit
status of the whole.

Why: one gateway process runs one asyncio loop on one core. Several processes bind the
same host:port with ``SO_REUSEPORT`` (the kernel spreads new connections among them)
and join the cluster through Redis (``--redis``), so a device registered on one worker
can be called from a device that landed on another, and one machine uses all its
cores. SQLite takes one writer well, not several processes writing the same file all
the time, so each worker keeps its own call store next to the one ``--db`` names.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

import attrs


@attrs.frozen
class WorkerPlan:
    """What one worker process is: its number, cluster id and call store."""

    index: int
    """1..N, as in its name ``w<index>``."""
    gateway_id: str
    db_path: Path | None
    """Its own SQLite file (None: no call store, ``--no-db``)."""


def worker_db_path(db_path: Path, index: int) -> Path:
    """Worker ``index``'s store beside ``db_path``: ``calls.sqlite3`` gives ``calls-w2.sqlite3``."""
    return db_path.with_name(f"{db_path.stem}-w{index}{db_path.suffix}")


def plan(count: int, base_id: str, db_path: Path | None) -> list[WorkerPlan]:
    """The ``count`` workers of one gateway: ids ``<base_id>-w1``... and their own stores.

    ``base_id`` is ``--gateway-id`` when given, else the edge name; ``db_path`` the store
    a single process would use (None: none). ValueError when ``count`` < 1.
    """
    if count < 1:
        raise ValueError(f"--workers must be at least 1, got {count}")
    return [
        WorkerPlan(
            index=i,
            gateway_id=f"{base_id}-w{i}",
            db_path=None if db_path is None else worker_db_path(db_path, i),
        )
        for i in range(1, count + 1)
    ]


class Worker(Protocol):
    """The part of :class:`multiprocessing.Process` the supervisor uses."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    @property
    def sentinel(self) -> int: ...

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


STOP_TIMEOUT_S = 30.0
"""How long stopped workers get to end their calls before they are killed."""


def supervise(
    plans: Sequence[WorkerPlan],
    make: Callable[[WorkerPlan], Worker],
    say: Callable[[str], None],
) -> int:
    """Start one process per plan, wait until all have stopped; their exit status.

    SIGINT or SIGTERM to this process is forwarded once as SIGINT (each worker ends
    its calls and leaves the cluster); later ones are ignored (tools such as
    ``timeout`` signal the process and then its group: a second SIGINT would cut a
    worker's orderly stop short). Workers still running :data:`STOP_TIMEOUT_S` after
    the stop are killed. A worker that stops
    on its own (it could not listen, its call store is unusable...) stops the others:
    the status is then 1 and ``say`` tells which worker and with what status (the
    worker printed its reason on stderr itself).
    """
    workers: list[tuple[WorkerPlan, Worker]] = []
    signals_seen = 0

    stop_by = float("inf")

    def stop_all(sig: signal.Signals) -> None:
        nonlocal stop_by
        stop_by = min(stop_by, time.monotonic() + STOP_TIMEOUT_S)
        _signal_all(workers, sig)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            stop_all(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for worker_plan in plans:
            worker = make(worker_plan)
            worker.start()
            workers.append((worker_plan, worker))
            store = worker_plan.db_path if worker_plan.db_path is not None else "none (--no-db)"
            say(
                f"worker w{worker_plan.index}: pid {worker.pid}, gateway id "
                f"{worker_plan.gateway_id}, call store {store}"
            )
        running = {worker.sentinel: (p, worker) for p, worker in workers}
        while running:
            if time.monotonic() > stop_by:
                say(f"workers still running {STOP_TIMEOUT_S:g} s after the stop: killing them")
                _signal_all(workers, signal.SIGKILL)
                stop_by = float("inf")  # killed: they are gone in a moment
            timeout = None if stop_by == float("inf") else max(0.0, stop_by - time.monotonic())
            for sentinel in multiprocessing.connection.wait(list(running), timeout=timeout):
                assert isinstance(sentinel, int)
                worker_plan, worker = running.pop(sentinel)
                worker.join()
                if signals_seen == 0:  # nobody asked it to stop
                    failed = True
                    say(
                        f"worker w{worker_plan.index} (pid {worker.pid}) stopped with status "
                        f"{worker.exitcode}: stopping the others"
                    )
                    signals_seen = 1
                    stop_all(signal.SIGINT)
                elif worker.exitcode not in (0, None):
                    failed = True
                    say(f"worker w{worker_plan.index} exited with status {worker.exitcode}")
    finally:
        _signal_all(workers, signal.SIGKILL)  # only those still running (an error above)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _signal_all(workers: Sequence[tuple[WorkerPlan, Worker]], sig: signal.Signals) -> None:
    for _, worker in workers:
        if worker.pid is not None and worker.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)


def detach_from_terminal_signals() -> None:
    """In a worker: Ctrl-C on the terminal reaches the supervisor only, which forwards it
    once (a second SIGINT would cut a worker's orderly stop short)."""
    if sys.platform != "win32":
        os.setpgrp()


__all__ = [
    "STOP_TIMEOUT_S",
    "WorkerPlan",
    "detach_from_terminal_signals",
    "plan",
    "supervise",
    "worker_db_path",
]
