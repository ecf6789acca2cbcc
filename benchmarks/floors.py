"""What this machine's Python stack costs with no softphone code on the path: the floors.

The gateway's CPU and memory figures (``benchmarks.cpu``, ``--sections scale``) include
what the event loop, the kernel, libsrtp and OpenSSL cost on their own. This module
measures those parts alone, so a target can be checked against what is possible at
all in this stack:

* **relay**: a bare SRTP relay. One UDP socket per call leg, as the gateway has;
  each datagram is unprotected with its leg's SRTP session, protected with the other
  leg's and sent to the other endpoint: ``recvfrom``, two libsrtp calls and
  ``sendto``, nothing else (no ICE, DTLS, RTCP, statistics or header rewrite). Two
  generator processes stand for the callers and the callees: every 20 ms each sends
  one SRTP packet per leg (a burst, as ``benchmarks.load`` does) and unprotects what
  comes back. Reported: the relay process' CPU seconds per call-second
  (``getrusage``), on asyncio or uvloop.
* **idle connections**: a bare asyncio server holding idle connections, plain TCP or
  TLS (the gateway's certificate kind, EC P-256, and its 4 KiB TLS read buffer, see
  :mod:`softphone.gateway.tls_read_buffer`). Reported: the server's ``VmRSS`` growth
  per connection once each has sent a few hundred bytes.

``python -m benchmarks.floors`` prints both; ``--help`` lists the sizes. No figure is
asserted anywhere: these are the report's reference lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import pylibsrtp

from benchmarks.harness import stop_child
from benchmarks.processes import rss_kb
from softphone.gateway.tls import client_ssl_context, generate_self_signed, server_ssl_context
from softphone.gateway.tls_read_buffer import shrink_tls_read_buffer

HOST = "127.0.0.1"
FRAME_S = 0.020
PAYLOAD = bytes(range(80))
"""A 20 ms Opus payload's typical size (about 80 bytes at 32 kbit/s)."""
KEY = bytes(range(28))
"""One AES-128-GCM master key and salt for every session (each session keeps its own state)."""
REPORT_S = 0.5
WARM_UP_CONNECTIONS = 100


def _session(outbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=KEY,
        ssrc_type=(
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        ),
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    )
    return pylibsrtp.Session(policy=policy)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _stdin_closed() -> None:
    """Return when the parent closes our stdin (how every child here is stopped)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


def _run(coroutine: Any, loop_name: str) -> None:
    if loop_name == "uvloop":
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)


# --------------------------------------------------------------------------- the relay child


class _RelayLeg(asyncio.DatagramProtocol):
    """One leg's socket: what arrives goes, re-protected, out of the paired leg's socket."""

    def __init__(self) -> None:
        self.rx = _session(outbound=False)
        self.tx = _session(outbound=True)
        self.peer: _RelayLeg | None = None
        self.transport: Any = None
        self.addr: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.addr = addr
        peer = self.peer
        if peer is None or peer.addr is None:
            return
        try:
            plain = self.rx.unprotect(data)
        except pylibsrtp.Error:
            return
        peer.transport.sendto(peer.tx.protect(plain), peer.addr)


async def _relay(calls: int) -> None:
    loop = asyncio.get_running_loop()
    legs: list[_RelayLeg] = []
    for _ in range(2 * calls):
        _, leg = await loop.create_datagram_endpoint(_RelayLeg, local_addr=(HOST, 0))
        legs.append(leg)
    for a, b in zip(legs[:calls], legs[calls:], strict=True):
        a.peer, b.peer = b, a
    ports = [leg.transport.get_extra_info("sockname")[1] for leg in legs]
    print(json.dumps({"a": ports[:calls], "b": ports[calls:]}), flush=True)
    stopped = asyncio.ensure_future(_stdin_closed())
    while not stopped.done():
        await asyncio.wait([stopped], timeout=REPORT_S)
        report = {"cpu": _cpu_seconds(), "t": time.monotonic()}
        print(json.dumps(report), flush=True)


# --------------------------------------------------------------------------- a generator child


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter
        self.rx = _session(outbound=False)
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        with contextlib.suppress(pylibsrtp.Error):
            self.rx.unprotect(data)
            self.counter[0] += 1


async def _generate(ports: list[int], ssrc_base: int) -> None:
    loop = asyncio.get_running_loop()
    received = [0]
    endpoints: list[tuple[_Endpoint, pylibsrtp.Session, tuple[str, int]]] = []
    for port in ports:
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: _Endpoint(received), local_addr=(HOST, 0)
        )
        endpoints.append((endpoint, _session(outbound=True), (HOST, port)))
    stopped = asyncio.ensure_future(_stdin_closed())
    sent = 0
    sequence = 0
    next_tick = loop.time()
    next_report = next_tick + 1.0
    while not stopped.done():
        for index, (endpoint, tx, relay) in enumerate(endpoints):
            header = struct.pack(
                "!BBHII", 0x80, 111, sequence & 0xFFFF, sequence * 960, ssrc_base + index
            )
            endpoint.transport.sendto(tx.protect(header + PAYLOAD), relay)
        sent += len(endpoints)
        sequence += 1
        if loop.time() >= next_report:
            report = {"t": time.monotonic(), "sent": sent, "received": received[0]}
            print(json.dumps(report), flush=True)
            next_report += 1.0
        next_tick += FRAME_S
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


# --------------------------------------------------------------------------- the server child


_HELD: list[Any] = []
"""The server child's open connections."""


class _Holder(asyncio.Protocol):
    """Keeps an accepted connection open and reads (and drops) what it sends."""

    def connection_made(self, transport: Any) -> None:
        _HELD.append(transport)

    def data_received(self, data: bytes) -> None:
        pass


async def _hold(tls: bool, folder: str) -> None:
    ssl_context = None
    if tls:
        shrink_tls_read_buffer()
        ssl_context = server_ssl_context(f"{folder}/cert.pem", f"{folder}/key.pem")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Holder, HOST, 0, ssl=ssl_context, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():  # each line asks for the resident size
        gc.collect()
        print(json.dumps({"rss_kb": rss_kb(os.getpid()), "held": len(_HELD)}))
        sys.stdout.flush()


# --------------------------------------------------------------------------- the parent


class _Child:
    """A child process of this module, its JSON lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, "-m", "benchmarks.floors", *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Child:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_child(self.proc, self._reader, timeout=10)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"{"):
                self.lines.put_nowait(json.loads(line))

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.lines.get(), timeout)

    async def fresh(self, timeout: float = 30.0) -> dict[str, Any]:
        """The first line written after this call (older ones are dropped)."""
        while not self.lines.empty():
            self.lines.get_nowait()
        return await self.next(timeout)

    async def ask(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"?\n")
        await self.proc.stdin.drain()
        return await self.next()


@dataclass(frozen=True)
class RelayFloor:
    """One run of the bare relay."""

    loop: str
    calls: int
    cpu_per_call_second: float
    delivery: float
    """Packets the generators got back / packets they sent, over the window."""


async def measure_relay(
    calls: int, loop: str = "asyncio", *, window_s: float = 5.0, settle_s: float = 2.0
) -> RelayFloor:
    """``calls`` calls (two legs each) through a bare SRTP relay on ``loop``."""
    async with _Child("--role", "relay", "--calls", str(calls), "--loop", loop) as relay:
        ports = await relay.next()
        async with (
            _Child("--role", "gen", "--ports", json.dumps(ports["a"]), "--ssrc", "1000") as a,
            _Child("--role", "gen", "--ports", json.dumps(ports["b"]), "--ssrc", "900000") as b,
        ):
            deadline = time.monotonic() + settle_s
            first = await relay.next()
            while first["t"] < deadline:
                first = await relay.next()
            gens_first = [await g.fresh() for g in (a, b)]
            last = first
            while last["t"] - first["t"] < window_s:
                last = await relay.next()
            gens_last = [await g.fresh() for g in (a, b)]
    sent = sum(z["sent"] - y["sent"] for y, z in zip(gens_first, gens_last, strict=True))
    got = sum(z["received"] - y["received"] for y, z in zip(gens_first, gens_last, strict=True))
    wall = last["t"] - first["t"]
    return RelayFloor(
        loop=loop,
        calls=calls,
        cpu_per_call_second=(last["cpu"] - first["cpu"]) / (calls * wall),
        delivery=got / sent if sent else 0.0,
    )


@dataclass(frozen=True)
class ConnectionFloor:
    """Idle connections held by a bare asyncio server."""

    tls: bool
    connections: int
    kib_per_connection: float


async def measure_idle_connections(tls: bool, connections: int) -> ConnectionFloor:
    """Open ``connections`` (after a warm-up) to a bare server; its RSS growth per one."""
    with tempfile.TemporaryDirectory() as folder:
        generate_self_signed(f"{folder}/cert.pem", f"{folder}/key.pem", hosts=[HOST])
        args = ["--role", "hold", "--folder", folder] + (["--tls"] if tls else [])
        async with _Child(*args) as server:
            port = (await server.next())["port"]
            ssl_context = client_ssl_context(f"{folder}/cert.pem") if tls else None
            writers: list[asyncio.StreamWriter] = []

            async def open_some(count: int) -> None:
                for _ in range(count):
                    _, writer = await asyncio.open_connection(HOST, port, ssl=ssl_context)
                    writer.write(b"x" * 300)
                    writers.append(writer)

            await open_some(WARM_UP_CONNECTIONS)
            await asyncio.sleep(0.5)
            before = await server.ask()
            await open_some(connections)
            await asyncio.sleep(1.0)
            after = await server.ask()
            for writer in writers:
                writer.close()
    held = after["held"] - before["held"]
    return ConnectionFloor(tls, held, (after["rss_kb"] - before["rss_kb"]) / max(held, 1))


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def report(
    calls: list[int],
    loops: list[str],
    repeat: int,
    connections: int,
    sections: list[str],
    quiet: float | None,
) -> None:
    """Measure and print the floors asked for (progress on stderr, the table on stdout)."""
    from benchmarks.cpu import wait_for_quiet_machine

    if "relay" in sections:
        print(
            "Bare SRTP relay (one socket per leg; recvfrom, unprotect, protect, sendto), "
            f"CPU-s per call-second, median of {repeat}:"
        )
        print("loop     " + "".join(f"{n:>9} call{'s' if n > 1 else ' '}" for n in calls))
        for loop in loops:
            cells = []
            for count in calls:
                runs: list[RelayFloor] = []
                for index in range(repeat):
                    if quiet is not None:
                        wait_for_quiet_machine(quiet)
                    result = await measure_relay(count, loop)
                    runs.append(result)
                    print(
                        f"[{loop} run {index + 1}/{repeat}] {count} calls: "
                        f"{result.cpu_per_call_second:.4f} "
                        f"(delivery {100 * result.delivery:.1f} %)",
                        file=sys.stderr,
                        flush=True,
                    )
                cells.append(statistics.median(r.cpu_per_call_second for r in runs))
            print(f"{loop:8} " + "".join(f"{c:>15.4f}" for c in cells), flush=True)
    if "connections" in sections:
        print(f"Idle connections on a bare asyncio server, {connections} of them:")
        for tls in (False, True):
            floor = await measure_idle_connections(tls, connections)
            kind = "TLS (EC P-256, 4 KiB read buffer)" if tls else "plain TCP"
            print(f"  {kind:34} {floor.kib_per_connection:6.1f} KiB per connection", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (the parent, or one of its children with ``--role``)."""
    parser = argparse.ArgumentParser(
        description="What the Python stack costs alone here: a bare SRTP relay's CPU and a "
        "bare asyncio server's memory per idle connection (plain and TLS)."
    )
    parser.add_argument("--sections", default="relay,connections", help="relay, connections")
    parser.add_argument("--calls", default="1,10,50", help="comma-separated call counts")
    parser.add_argument("--loops", default="asyncio,uvloop", help="asyncio, uvloop")
    parser.add_argument("--repeat", type=int, default=3, help="runs per count (median printed)")
    parser.add_argument("--connections", type=int, default=2000, help="idle connections held")
    parser.add_argument(
        "--quiet",
        type=float,
        default=None,
        metavar="CORES",
        help="start each relay run only once fewer than CORES cores are busy",
    )
    parser.add_argument("--role", choices=("relay", "gen", "hold"), help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--ssrc", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "relay":
        _run(_relay(int(args.calls)), args.loop)
    elif args.role == "gen":
        asyncio.run(_generate(json.loads(args.ports), args.ssrc))
    elif args.role == "hold":
        asyncio.run(_hold(args.tls, args.folder))
    else:
        limit = raise_open_file_limit()
        print(f"Floors on {HOST} ({os.cpu_count()} cores, open-file limit {limit})", flush=True)
        asyncio.run(
            report(
                [int(n) for n in args.calls.split(",")],
                args.loops.split(","),
                args.repeat,
                args.connections,
                args.sections.split(","),
                args.quiet,
            )
        )


if __name__ == "__main__":
    main()
