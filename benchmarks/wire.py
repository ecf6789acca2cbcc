"""Wire-level peers for probing a gateway the way careless or hostile clients do.

Used by the ``abuse`` benchmark section and by ``tests/test_gateway_abuse.py``:

* :class:`GatewayChild`: ``softphone gateway --no-tls`` in its own process, its log in
  a file, with its memory (``VmRSS``), open file descriptors and log size readable;
* :class:`RawClient`: a plain TCP socket that does the WebSocket handshake itself, so
  it can shrink its receive buffer and then never read (a client that cannot keep up);
* :class:`Flooder`: a thread sending one frame over and over as fast as the socket
  takes it, reconnecting when the gateway closes it;
* :class:`WireClient`: a well-behaved client on ``websockets``: ``listen`` with a token,
  echo every heartbeat, and remember when each one arrived;
* :func:`connect_latency`: from opening a socket to the gateway's ``connected``.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from softphone.media.peer_connection import PeerConnection
from softphone.signaling.messages import (
    HEARTBEAT,
    S2C,
    Heartbeat,
    Listen,
    Message,
    decode,
    encode,
    type_of,
)

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class GatewayChild:
    """``softphone gateway --no-tls`` on a free port in a child process.

    ``args`` are extra command-line options (limits, log level). The gateway's stderr
    (its log) goes to ``log_path``.
    """

    def __init__(self, log_path: Path | None, *args: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The signaling URL."""
        return f"ws://{HOST}:{self.port}/signal"

    @property
    def pid(self) -> int:
        """The gateway's process id."""
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> GatewayChild:
        """Launch it (again, on the same port) and wait until its port accepts connections."""
        with open(self.log_path or os.devnull, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "softphone.cli",
                    "gateway",
                    "--no-tls",
                    "--port",
                    str(self.port),
                    *([] if "--db" in self.args else ["--no-db"]),
                    *self.args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return self
        raise RuntimeError("gateway did not start listening within 30 s")

    def kill(self) -> None:
        """SIGKILL: the process dies with every call and socket it had."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Terminate the gateway (killed if it does not stop within 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def __aenter__(self) -> GatewayChild:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def rss_kb(self) -> int:
        """Resident memory of the gateway process (``VmRSS``), KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def fd_count(self) -> int:
        """Open file descriptors of the gateway process."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_bytes(self) -> int:
        """Size of the gateway's log so far (0 when it is discarded)."""
        return self.log_path.stat().st_size if self.log_path else 0

    def log_text(self) -> str:
        """The gateway's log so far ("" when it is discarded)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def client_frame(text: str | bytes) -> bytes:
    """One masked text frame, as a client must send it."""
    data = text.encode() if isinstance(text, str) else text
    return Frame(Opcode.TEXT, data).serialize(mask=True)


class RawClient:
    """A WebSocket client on a bare socket: handshake by hand, then raw frames.

    ``receive_buffer`` shrinks ``SO_RCVBUF`` before connecting; with ``read=False``
    (the default) nothing is ever read after the handshake, so whatever the gateway
    sends piles up in its own buffers.
    """

    def __init__(self, port: int, *, receive_buffer: int | None = None, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /signal HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)  # byte by byte: leave any frame after it unread
            if not chunk:
                raise ConnectionError("gateway closed during the handshake")
            response += chunk
        if not response.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {response[:80]!r}")

    def send(self, data: bytes) -> None:
        """Send raw bytes (one or more frames)."""
        self.sock.sendall(data)

    def closed_by_peer(self, timeout: float) -> bool:
        """Read (and discard) until the gateway ends the connection; False on timeout."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(1 << 16):
                    return True
            except TimeoutError:
                continue
            except OSError:  # reset: the gateway aborted the connection
                return True
        return False

    def close(self) -> None:
        """Drop the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()


class Flooder(threading.Thread):
    """Sends ``frame`` as fast as the gateway accepts it, from a thread.

    ``batch`` copies go out per ``sendall``. With ``read=False`` the socket has a
    small receive buffer and is never read. With ``reconnect`` a closed connection
    is replaced by a new one at once. Counts frames sent and connections opened.
    """

    def __init__(
        self,
        port: int,
        frame: bytes,
        *,
        batch: int = 100,
        read: bool = True,
        reconnect: bool = True,
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.payload = frame * batch
        self.batch = batch
        self.read = read
        self.reconnect = reconnect
        self.frames_sent = 0
        self.connections = 0
        self.closed_by_gateway = threading.Event()
        self._stop_flag = threading.Event()

    def stop(self) -> None:
        """Ask the thread to finish, and wait for it."""
        self._stop_flag.set()
        self.join(10)

    def _drain(self, client: RawClient) -> None:
        with contextlib.suppress(OSError):  # the socket may be closed already, or meanwhile
            client.sock.settimeout(None)
            while client.sock.recv(1 << 16):
                pass

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                client = RawClient(self.port, receive_buffer=None if self.read else 4096)
            except OSError:
                time.sleep(0.01)
                continue
            self.connections += 1
            if self.read:
                threading.Thread(target=self._drain, args=(client,), daemon=True).start()
            client.sock.settimeout(0.5)
            try:
                while not self._stop_flag.is_set():
                    try:
                        client.send(self.payload)
                    except TimeoutError:
                        continue  # the gateway stopped reading us; keep trying
                    self.frames_sent += self.batch
            except OSError:
                self.closed_by_gateway.set()
            finally:
                client.close()
            if not self.reconnect:
                return


class WireClient:
    """A well-behaved client: ``listen``, echo heartbeats, keep every inbound frame."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.heartbeats: list[float] = []
        self.messages: list[Message] = []
        self.connected_at: float | None = None
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_message = asyncio.Event()

    async def start(self) -> WireClient:
        """Connect (and ``listen`` if there is a token); frames are read in a task."""
        self.ws = await connect(self.url, ping_interval=None, max_size=None)
        self.connected_at = time.monotonic()
        self._reader = asyncio.ensure_future(self._read())
        if self.token is not None:
            await self.send(Listen(token=self.token, reconnect_timeout=0))
            await self.wait_for("connected")
        return self

    async def send(self, message: Message) -> None:
        """Send one typed message."""
        assert self.ws is not None
        await self.ws.send(encode(message))

    async def send_raw(self, text: str) -> None:
        """Send one text frame as it is."""
        assert self.ws is not None
        await self.ws.send(text)

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                if frame == HEARTBEAT:
                    self.heartbeats.append(time.monotonic())
                    await self.ws.send(HEARTBEAT)
                    continue
                message = decode(frame, S2C)
                assert not isinstance(message, Heartbeat)
                self.messages.append(message)
                self._new_message.set()

    def of_type(self, kind: str) -> list[Message]:
        """Messages received so far of the wire type ``kind``."""
        return [m for m in self.messages if type_of(m) == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10) -> Message:
        """The ``count``-th message of type ``kind`` (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while len(self.of_type(kind)) < count:
                if self._reader is not None and self._reader.done():
                    raise ConnectionError(f"socket closed before {count} '{kind}'")
                self._new_message.clear()
                await self._new_message.wait()
        return self.of_type(kind)[count - 1]

    async def closed(self, timeout: float) -> int | None:
        """Wait until the gateway closes the socket; its close code (None on timeout)."""
        assert self.ws is not None and self._reader is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
            return self.ws.close_code
        return None

    def longest_silence(self, since: float, until: float) -> float:
        """Longest time without a heartbeat between ``since`` and ``until`` (monotonic)."""
        marks = [since, *(t for t in self.heartbeats if since < t < until), until]
        return max(b - a for a, b in itertools.pairwise(marks))

    async def stop(self) -> None:
        """Close the socket and stop reading."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def connect_latency(url: str, token: str, timeout: float = 60) -> float:
    """Seconds from opening a socket to the gateway's ``connected`` (then closes it)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        async with connect(url, ping_interval=None) as ws:
            await ws.send(encode(Listen(token=token, reconnect_timeout=0)))
            async for frame in ws:
                if frame == HEARTBEAT:
                    continue
                message = decode(frame, S2C)
                if not isinstance(message, Heartbeat) and type_of(message) == "connected":
                    return time.monotonic() - started
    raise ConnectionError("socket closed before 'connected'")


async def dead_offer() -> str:
    """A real SDP offer from a peer connection closed at once: media will never start."""
    pc = PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"))
    try:
        return await pc.create_offer(None)
    finally:
        await pc.close()


def temp_sid(index: int) -> str:
    """A ``TJS…`` temporary call id, as the JS SDK makes them, numbered ``index``."""
    return f"TJS{index:08x}-0000-4000-8000-000000000000"
