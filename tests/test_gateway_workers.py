"""``softphone gateway --workers N``: N processes on one port (SO_REUSEPORT) and one Redis.

The real command runs as a subprocess with two workers and a real redis-server; which
worker took a connection is read from Redis presence (each worker publishes the
identities registered on it under its own gateway id). A device on one worker calls a
device on the other and both hear each other; SIGINT to the supervisor stops both
workers in order (they withdraw their presence) and it exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from calltools import Listener, recent
from clustertools import FailoverProxy, RedisServer, redis_server
from recorders import EventLog, eventually

from benchmarks.wire import free_port
from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.cli import build_parser
from softphone.cli_common import CliError
from softphone.cli_gateway import check_workers, worker_namespace
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_ACCOUNT_SID
from softphone.gateway.workers import WorkerPlan, plan, worker_db_path

__all__ = ["redis_server"]  # fixture, used by name

WORKER_LINE = re.compile(r"^worker w(\d+): pid (\d+), gateway id (\S+), call store (.+)$")
DEVICES = 20


class GatewayProcess:
    """``softphone gateway ARGS`` as a subprocess whose output is read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *args: str, home: Path) -> GatewayProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "softphone.cli",
            "gateway",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "SOFTPHONE_HOME": str(home)},
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode().rstrip("\n"))

    async def wait_output(self, predicate: Callable[[GatewayProcess], bool]) -> None:
        await eventually(lambda: predicate(self) or self.proc.returncode is not None, timeout=60)
        assert predicate(self), "\n".join(self.out + self.err)

    async def wait(self, timeout: float = 60) -> int:
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    def workers(self) -> dict[str, int]:
        """Gateway id -> pid, from the supervisor's startup lines."""
        found = (WORKER_LINE.match(line) for line in self.out)
        return {m[3]: int(m[2]) for m in found if m}

    async def kill(self) -> None:
        # the workers first: they hold the supervisor's output pipes open
        for pid in self.workers().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()


@pytest.fixture
async def two_workers(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, int]]:
    """``softphone gateway --workers 2`` on a free port, both workers in the cluster."""
    port = free_port()
    gateway = await GatewayProcess.start(
        "--no-tls",
        "--workers",
        "2",
        "--redis",
        redis_server.url,
        "--port",
        str(port),
        "--no-db",
        "--heartbeat-interval",
        "1",
        home=tmp_path,
    )
    try:
        await gateway.wait_output(
            lambda g: (
                len(g.workers()) == 2
                and all(
                    any(f"gateway {gid} joined Redis" in e for e in g.err) for gid in g.workers()
                )
            )
        )
        yield gateway, port
    finally:
        await gateway.kill()


def _hz(index: int) -> float:
    return 400.0 + 100.0 * index  # 100 Hz apart: each device's voice is told from the others


def _near(pcm: object, hz: float) -> bool:
    return abs(dominant_frequency(pcm) - hz) < 30  # type: ignore[arg-type]


async def test_two_workers_share_the_port_and_call_each_other(
    two_workers: tuple[GatewayProcess, int],
    redis_server: RedisServer,
    make_token: Callable[..., str],
    loopback_media: None,
) -> None:
    gateway, port = two_workers
    pids = gateway.workers()
    assert sorted(pids) == ["loopback-w1", "loopback-w2"]
    assert len(set(pids.values())) == 2 and gateway.proc.pid not in pids.values()
    assert all("call store none (--no-db)" in line for line in gateway.out if "pid" in line)

    url = f"ws://127.0.0.1:{port}/signal"
    listeners = [
        Listener(
            Device(
                make_token(f"u{i}"),
                {"chunderw": url, "file_input_stream": ToneSource([_hz(i)])},
            )
        )
        for i in range(DEVICES)
    ]
    try:
        await asyncio.gather(*(listener.device.register() for listener in listeners))

        # each identity is present on exactly one worker; SO_REUSEPORT gave both some
        where: dict[int, str] = {}

        async def located() -> bool:
            for i in range(DEVICES):
                on = await redis_server.gateways_of(DEV_ACCOUNT_SID, f"u{i}")
                if len(on) == 1:
                    where[i] = on.pop()
            return len(where) == DEVICES

        for _ in range(500):
            if await located():
                break
            await asyncio.sleep(0.02)
        assert len(where) == DEVICES, where
        on_w1 = [i for i, gid in where.items() if gid == "loopback-w1"]
        on_w2 = [i for i, gid in where.items() if gid == "loopback-w2"]
        assert on_w1 and on_w2, where

        # a device on w2 calls one on w1: relayed through Redis, audio both ways
        callee, caller = listeners[on_w1[0]], listeners[on_w2[0]]
        call = await caller.device.connect(params={"To": f"client:u{on_w1[0]}"})
        log = EventLog(call, "accept", "disconnect", "error")
        await log.wait_for("accept", timeout=15)
        await eventually(lambda: call.status() == "open", timeout=15)
        heard_by_caller = MemorySink()
        call.get_remote_stream().add_sink(heard_by_caller)
        callee_call = await callee.wait_call()
        await eventually(lambda: callee_call.status() == "open")
        assert callee_call.parameters["From"] == f"client:u{on_w2[0]}"
        callee_hears = await recent(callee.heard, 0.6)
        caller_hears = await recent(heard_by_caller, 0.6)
        assert _near(callee_hears, _hz(on_w2[0])), dominant_frequency(callee_hears)
        assert _near(caller_hears, _hz(on_w1[0])), dominant_frequency(caller_hears)
        call.disconnect()
        await log.wait_for("disconnect")
        assert log.count("error") == 0

        # SIGINT to the supervisor: both workers stop in order (presence withdrawn), exit 0
        gateway.proc.send_signal(signal.SIGINT)
        assert await gateway.wait() == 0, "\n".join(gateway.out + gateway.err)
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        for i in range(DEVICES):
            assert await redis_server.gateways_of(DEV_ACCOUNT_SID, f"u{i}") == set()
        assert not any("Traceback" in line for line in gateway.err), "\n".join(gateway.err)
    finally:
        await asyncio.gather(*(listener.device.destroy() for listener in listeners))


async def test_workers_without_redis_fail_fast_with_a_clear_message(tmp_path: Path) -> None:
    gateway = await GatewayProcess.start(
        "--no-tls", "--workers", "2", "--port", str(free_port()), home=tmp_path
    )
    try:
        assert await gateway.wait(timeout=30) == 2
    finally:
        await gateway.kill()
    assert gateway.err == [
        "softphone gateway: --workers needs --redis: the workers share presence and calls "
        "through Redis (a device on one worker is called from another)"
    ]
    assert not gateway.workers()


async def test_a_worker_that_cannot_listen_stops_the_supervisor_with_its_reason(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = await GatewayProcess.start(
            "--no-tls",
            "--workers",
            "2",
            "--redis",
            redis_server.url,
            "--port",
            str(port),
            "--no-db",
            home=tmp_path,
        )
        try:
            code = await gateway.wait()
        finally:
            await gateway.kill()
    output = "\n".join(gateway.out + gateway.err)
    assert code == 1, output
    assert len(gateway.workers()) == 2
    assert any(f"cannot listen on 127.0.0.1:{port}" in line for line in gateway.err), output
    assert any(re.match(r"worker w\d \(pid \d+\) stopped with status 1", s) for s in gateway.out)


# -- pure: what each worker is told -------------------------------------------------------


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["gateway", *argv])


@pytest.mark.pure
def test_plan_names_workers_after_the_edge_or_the_gateway_id_with_their_own_stores() -> None:
    assert plan(2, "loopback", None) == [
        WorkerPlan(index=1, gateway_id="loopback-w1", db_path=None),
        WorkerPlan(index=2, gateway_id="loopback-w2", db_path=None),
    ]
    (first, _, third) = plan(3, "eu", Path("/var/lib/sp/calls.sqlite3"))
    assert first.db_path == Path("/var/lib/sp/calls-w1.sqlite3")
    assert third == WorkerPlan(3, "eu-w3", Path("/var/lib/sp/calls-w3.sqlite3"))
    assert worker_db_path(Path("/x/history.db"), 2) == Path("/x/history-w2.db")
    with pytest.raises(ValueError, match="at least 1"):
        plan(0, "loopback", None)


@pytest.mark.pure
def test_worker_namespace_is_a_single_reuse_port_gateway_with_its_own_id_and_store() -> None:
    args = _args(
        "--workers", "4", "--redis", "redis://r:6379/0", "--port", "9443",
        "--db", "/d/calls.sqlite3", "--stun", "stun:s:3478", "--edge", "eu",
    )  # fmt: skip
    assert args.workers == 4 and not args.reuse_port
    (_, second, *_) = plan(args.workers, args.gateway_id or args.edge, Path(args.db))
    worker = worker_namespace(args, second, (Path("/c/cert.pem"), Path("/c/key.pem")))
    assert worker.workers == 1 and worker.reuse_port
    assert worker.gateway_id == "eu-w2"
    assert (worker.db, worker.no_db) == ("/d/calls-w2.sqlite3", False)
    assert (worker.cert, worker.key) == ("/c/cert.pem", "/c/key.pem")
    # everything else is the supervisor's command line, untouched (and it is not changed)
    assert (worker.redis, worker.port, worker.stun, worker.edge) == (
        "redis://r:6379/0", 9443, ["stun:s:3478"], "eu"
    )  # fmt: skip
    assert args.workers == 4 and args.db == "/d/calls.sqlite3" and not args.reuse_port

    no_db = _args("--workers", "2", "--redis", "redis://r", "--port", "1", "--no-db")
    (first, _) = plan(2, "gw", None)
    worker = worker_namespace(no_db, first, None)
    assert (worker.db, worker.no_db, worker.gateway_id) == (None, True, "gw-w1")
    assert worker.cert is None


@pytest.mark.pure
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "2", "--port", "9443"], "--workers needs --redis"),
        (["--workers", "2", "--redis", "redis://r", "--port", "0"], "fixed --port"),
        (["--workers", "2", "--redis", "redis://r", "--api-port", "9444"], "--api-port"),
        (["--workers", "0"], "at least 1"),
    ],
)
def testcheck_workers_refuses_what_workers_cannot_do(argv: list[str], message: str) -> None:
    with pytest.raises(CliError, match=re.escape(message)):
        check_workers(_args(*argv))


@pytest.mark.pure
def test_one_worker_needs_nothing_more() -> None:
    check_workers(_args("--port", "0"))
    assert not _args().reuse_port and _args().workers == 1


async def test_a_call_survives_reconnects_that_land_on_the_other_worker(
    two_workers: tuple[GatewayProcess, int],
    redis_server: RedisServer,
    make_token: Callable[..., str],
    loopback_media: None,
) -> None:
    """alice's socket drops again and again; each reconnect reaches whichever worker the
    kernel picks. One that lands on the worker not holding her call is relayed to it."""
    gateway, port = two_workers
    proxy = FailoverProxy([port])  # a connection cut between alice and the port
    await proxy.start()
    url = f"ws://127.0.0.1:{port}/signal"
    bob = Listener(
        Device(make_token("bob"), {"chunderw": url, "file_input_stream": ToneSource([_hz(1)])})
    )
    alice = Device(
        make_token("alice"),
        {
            "chunderw": proxy.url,
            "file_input_stream": ToneSource([_hz(0)]),
            "max_call_signaling_timeout_ms": 30_000,
        },
    )
    try:
        await bob.device.register()
        call = await alice.connect(params={"To": "client:bob"})
        log = EventLog(call, "reconnected", "disconnect", "error")
        await eventually(lambda: call.status() == "open", timeout=15)
        heard_by_alice = MemorySink()
        call.get_remote_stream().add_sink(heard_by_alice)
        bob_call = await bob.wait_call()
        await eventually(lambda: bob_call.status() == "open")

        drops = 0
        while not any("relaying it there" in line for line in gateway.err):
            assert drops < 12, "no reconnect landed on the other worker in 12 tries"
            drops += 1
            proxy.drop()
            await log.wait_for("reconnected", count=drops, timeout=20)
        # the media never moved: both still hear each other, and the call ends cleanly
        assert _near(await recent(bob.heard, 0.6), _hz(0))
        assert _near(await recent(heard_by_alice, 0.6), _hz(1))
        assert call.status() == "open" and bob_call.status() == "open"
        bob_log = EventLog(bob_call, "disconnect")
        call.disconnect()
        await bob_log.wait_for("disconnect", timeout=10)
        assert log.count("error") == 0
    finally:
        await proxy.stop()
        await alice.destroy()
        await bob.device.destroy()
