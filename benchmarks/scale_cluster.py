"""The processes of the scale benchmark: a redis-server, gateways on it, idle-client generators.

* :class:`Redis`: ``redis-server`` on a free 127.0.0.1 port, no persistence, and a
  client to read its memory and the presence entries the gateways publish;
* :class:`Gateways`: ``softphone gateway --redis`` processes, two on their own ports
  (``--gateway-id gwA`` / ``gwB``) or ``--workers N`` on one port, with the pid of
  the process that holds each gateway id's connections (read from ``/proc``);
* :class:`Generator`: one :mod:`benchmarks.idle_clients` process.

Each is started through a :class:`~benchmarks.processes.Children`, which ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis

from benchmarks.processes import Children, cpu_seconds
from benchmarks.wire import HOST, free_port
from softphone.gateway.accounts import DEV_ACCOUNT_SID
from softphone.gateway.cluster import directory
from softphone.gateway.tls import generate_self_signed

Layout = Literal["pair", "workers"]
START_TIMEOUT_S = 60.0


class Redis:
    """A ``redis-server`` on a free 127.0.0.1 port with no persistence, and a client."""

    def __init__(self, children: Children) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.client = aioredis.Redis.from_url(self.url)
        self.pid = 0
        self._children = children

    async def start(self) -> Redis:
        proc = self._children.popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", HOST),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        self.pid = proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, aioredis.ConnectionError):
                if await self.client.ping():
                    return self
            await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    async def used_memory(self) -> int:
        """``INFO memory`` ``used_memory``, bytes."""
        info: dict[str, Any] = await self.client.info("memory")
        return int(info["used_memory"])

    async def presence_count(self, identities: Sequence[str]) -> int:
        """How many of ``identities`` have a presence entry in Redis now."""
        async with self.client.pipeline(transaction=False) as pipe:
            for identity in identities:
                pipe.exists(directory.presence_key(DEV_ACCOUNT_SID, identity))
            return sum(int(found) for found in await pipe.execute())

    async def gateways_of(self, identity: str) -> list[str]:
        """Gateway ids where ``identity`` is registered."""
        members = await self.client.zrange(directory.presence_key(DEV_ACCOUNT_SID, identity), 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def close(self) -> None:
        await self.client.aclose()


@dataclass
class Gateways:
    """``softphone gateway`` processes sharing one Redis.

    ``pair``: two gateways, ``--gateway-id gwA`` and ``gwB``, each on its own port;
    ``workers``: one ``softphone gateway --workers N`` (ids ``gw-w1``...) on one port.
    """

    layout: Layout
    workers: int
    tls: bool
    redis: Redis
    children: Children
    home: Path
    urls: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    """Gateway id -> pid of the process holding its connections."""
    supervisor: int | None = None
    cafile: str | None = None

    def _command(self, port: int, *extra: str) -> list[str]:
        tls = ["--no-tls"]
        if self.tls:
            cert, key = self.home / "cert.pem", self.home / "key.pem"
            if not cert.exists():
                generate_self_signed(cert, key, hosts=["localhost", HOST])
            tls = ["--cert", str(cert), "--key", str(key)]
            self.cafile = str(cert)
        return [
            sys.executable,
            "-m",
            "softphone.cli",
            "gateway",
            *tls,
            "--no-db",
            "--port",
            str(port),
            "--redis",
            self.redis.url,
            "--log-level",
            "warn",
            *extra,
        ]

    def _spawn(self, command: list[str], name: str) -> int:
        env = {**os.environ, "SOFTPHONE_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        with (
            open(self.home / f"{name}.out", "wb") as out,
            open(self.home / f"{name}.err", "wb") as err,
        ):
            return self.children.popen(command, stdout=out, stderr=err, env=env).pid

    async def start(self) -> Gateways:
        scheme = "wss" if self.tls else "ws"
        if self.layout == "pair":
            for gateway_id in ("gwA", "gwB"):
                port = free_port()
                pid = self._spawn(self._command(port, "--gateway-id", gateway_id), gateway_id)
                self.pids[gateway_id] = pid
                self.urls.append(f"{scheme}://{HOST}:{port}/signal")
        else:
            port = free_port()
            command = self._command(port, "--gateway-id", "gw", "--workers", str(self.workers))
            self.supervisor = self._spawn(command, "gw")
            self.urls.append(f"{scheme}://{HOST}:{port}/signal")
            if self.workers == 1:
                self.pids["gw"] = self.supervisor
            else:
                self.pids = await self._worker_pids()
        await self._wait_joined()
        return self

    async def _worker_pids(self) -> dict[str, int]:
        """The workers' ids and pids, from the supervisor's startup lines."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found: dict[str, int] = {}
            for line in (self.home / "gw.out").read_text().splitlines():
                words = line.split()
                if line.startswith("worker w") and "pid" in words and "id" in words:
                    pid = int(words[words.index("pid") + 1].rstrip(","))
                    gateway_id = words[words.index("id") + 1].rstrip(",")
                    found[gateway_id] = pid
            if len(found) == self.workers:
                for pid in found.values():
                    self.children.adopt(pid)
                return found
            await asyncio.sleep(0.05)
        raise RuntimeError(f"workers did not start: {self.log_tail()}")

    async def _wait_joined(self) -> None:
        """Until every gateway announced itself in Redis (it listens by then)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            joined = [await self.redis.client.exists(directory.gateway_key(g)) for g in self.pids]
            if all(joined):
                return
            if not set(self.pids.values()) <= set(self.children.alive()):
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"gateways did not join Redis: {self.log_tail()}")

    def log_tail(self) -> str:
        """The end of every gateway log, for an error message."""
        return " | ".join(p.read_text()[-500:] for p in sorted(self.home.glob("*.err")))

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each gateway process."""
        return {gateway_id: cpu_seconds(pid) for gateway_id, pid in self.pids.items()}


# -- load generators ----------------------------------------------------------------------


class Generator:
    """One :mod:`benchmarks.idle_clients` process, its JSON lines read as they come."""

    def __init__(self, children: Children) -> None:
        self.children = children
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *args: str) -> None:
        self.proc = await self.children.exec(
            sys.executable,
            "-m",
            "benchmarks.idle_clients",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"{"):
                self.lines.append(json.loads(line))
                self._changed.set()
        self._changed.set()

    async def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """The first line (so far or to come) that has ``key``."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if key in line:
                        return line
                if self._reader is None or self._reader.done():
                    raise RuntimeError("an idle-client generator exited")
                self._changed.clear()
                await self._changed.wait()

    def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
