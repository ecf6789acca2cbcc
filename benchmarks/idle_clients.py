"""Cheap idle signaling clients: thousands of registered devices in one process.

A full :class:`~softphone.core.device.Device` (or even a ``websockets`` client)
costs tens of KiB and a few tasks per connection; to load a gateway with 10,000
registered devices from two cores, each client here is one asyncio
:class:`~asyncio.Protocol` on a bare (or TLS) socket that does the WebSocket
handshake itself and then sends the JS SDK's real frames, masked as a client
must: ``listen`` with a valid token (the same ``browserinfo`` and
``reconnectTimeout`` our Device sends), then, on ``connected``, ``register
{media: {audio: true}}``. A client counts as registered on the gateway's
``ready``. Afterwards it only answers heartbeats (and WebSocket pings) and stays
idle. With ``--mode handshake`` a client stops after the handshake and never
sends ``listen`` (an idle socket, for comparison; the gateway closes those after
its listen timeout, 30 s by default).

``python -m benchmarks.idle_clients --url URL [--url URL2 ...] --count N``
makes their tokens, prints ``{"armed": N, "rss_kb": ...}`` and waits for a line on stdin
(so that every generator starts at once), then opens N clients (identities
``<prefix><first>``...; client ``i`` goes to URL ``i % len(urls)``), at most
``--inflight`` at a time, and prints JSON lines: ``{"done": n, "failed": k,
"t_first": s, "t_last": s}`` once every client is registered (or failed; times
are ``time.monotonic()``, the same clock in every process on Linux: when the
first connection was opened and the last ``ready`` arrived), then every second
``{"alive": n, "heartbeats": k, "rss_kb": ...}``. It closes everything and exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import ssl
import struct
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from benchmarks.harness import token
from benchmarks.wire import client_frame
from softphone.gateway.tls import client_ssl_context
from softphone.signaling.messages import HEARTBEAT, Listen, Register, encode
from softphone.signaling.params import reconnect_timeout_seconds
from softphone.signaling.pstream import browserinfo

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
HEARTBEAT_FRAME = client_frame(HEARTBEAT)
REGISTER_FRAME = client_frame(encode(Register.presence(True)))
CLIENT_TIMEOUT_S = 60.0


def raise_fd_limit() -> int:
    """Raise this process' soft open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame of any opcode (pong, close)."""
    if opcode == OP_TEXT:
        return client_frame(payload)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def parse_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete (unmasked, server) frame off the front of ``buffer``."""
    frames: list[tuple[int, bytes]] = []
    while len(buffer) >= 2:
        opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            (length,), offset = struct.unpack("!H", buffer[2:4]), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            (length,), offset = struct.unpack("!Q", buffer[2:10]), 10
        if len(buffer) < offset + length:
            break
        frames.append((opcode, bytes(buffer[offset : offset + length])))
        del buffer[: offset + length]
    return frames


class IdleClient(asyncio.Protocol):
    """One signaling client: handshake, ``listen``, ``register``, then heartbeats only."""

    def __init__(
        self, host: str, listen_frame: bytes | None, on_heartbeat: Callable[[], None]
    ) -> None:
        self.listen_frame = listen_frame
        self.on_heartbeat = on_heartbeat
        self.host = host
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._upgraded = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /signal HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("closed by the gateway")

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {bytes(self._buffer[:60])!r}")
                self.transport.close()
                return
            del self._buffer[: end + 4]
            self._upgraded = True
            if self.listen_frame is None:  # --mode handshake: an idle socket
                self.ready.set_result(None)
            else:
                self.transport.write(self.listen_frame)
        for opcode, payload in parse_frames(self._buffer):
            self._on_frame(opcode, payload)

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == OP_PING:
            self.transport.write(masked_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.transport.write(masked_frame(OP_CLOSE, payload[:2]))
            self._fail("close frame from the gateway")
        elif opcode == OP_TEXT and payload == HEARTBEAT.encode():
            self.transport.write(HEARTBEAT_FRAME)
            self.on_heartbeat()
        elif opcode == OP_TEXT and not self.ready.done():
            kind = json.loads(payload).get("type")
            if kind == "connected":
                self.transport.write(REGISTER_FRAME)
            elif kind == "ready":
                self.ready.set_result(None)
            elif kind in ("error", "close"):
                self._fail(f"gateway answered {payload[:120]!r}")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


def rss_kb() -> int:
    """This process' resident memory, KiB."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _run(args: argparse.Namespace) -> None:
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    tls = client_ssl_context(args.cafile) if args.cafile else None
    targets = [urlsplit(url) for url in args.url]
    listen_frames: list[bytes | None] = [
        None
        if args.mode == "handshake"
        else client_frame(
            encode(
                Listen(
                    browserinfo=browserinfo(),
                    reconnect_timeout=reconnect_timeout_seconds(0),
                    token=token(f"{args.prefix}{args.first + i}"),
                )
            )
        )
        for i in range(args.count)
    ]  # minted before the clock starts: token signing is the client's cost, not the gateway's
    clients: list[IdleClient] = []
    heartbeats = 0
    failed = 0
    gate = asyncio.Semaphore(args.inflight)

    def heartbeat() -> None:
        nonlocal heartbeats
        heartbeats += 1

    async def open_one(i: int) -> None:
        nonlocal failed
        target = targets[i % len(targets)]
        assert target.hostname is not None and target.port is not None
        async with gate:
            try:
                async with asyncio.timeout(CLIENT_TIMEOUT_S):
                    _, client = await loop.create_connection(
                        lambda: IdleClient(target.netloc, listen_frames[i], heartbeat),
                        target.hostname,
                        target.port,
                        ssl=tls if target.scheme == "wss" else None,
                    )
                    clients.append(client)
                    await client.ready
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                failed += 1
                if failed <= 3:
                    print(f"idle client {i}: {exc!r}", file=sys.stderr, flush=True)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"armed": args.count, "rss_kb": rss_kb()}), flush=True)
    if not await reader.readline():
        return  # stdin closed before the start: nothing to do
    t_first = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(args.count)))
    t_last = time.monotonic()
    done = sum(1 for c in clients if c.ready.done() and not c.ready.exception())
    print(
        json.dumps({"done": done, "failed": failed, "t_first": t_first, "t_last": t_last}),
        flush=True,
    )

    stdin_closed = asyncio.ensure_future(reader.read())
    while not stdin_closed.done():
        await asyncio.wait([stdin_closed], timeout=1.0)
        alive = sum(1 for c in clients if not c.closed)
        print(
            json.dumps({"alive": alive, "heartbeats": heartbeats, "rss_kb": rss_kb()}), flush=True
        )
    for client in clients:
        client.close()
    await asyncio.sleep(0.1)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="ws:// or wss:// /signal")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first identity")
    parser.add_argument("--prefix", default="idle", help="identity prefix")
    parser.add_argument("--mode", choices=("listen", "handshake"), default="listen")
    parser.add_argument("--inflight", type=int, default=200, help="clients connecting at once")
    parser.add_argument("--cafile", help="certificate to trust for wss://")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
