"""A real TURN server for the TURN tests: coturn's ``turnserver`` (apt package coturn).

Registered from ``conftest.py`` via ``pytest_plugins``; ``benchmarks/turn.py``
imports :class:`Coturn` too. Each server gets a loopback address of its own
(``127.x.y.z``, listener and relay alike), so its ports never collide with
anything else on the host and a firewall rule can single its traffic out
(:meth:`Coturn.block_udp`). It relays to loopback peers (the gateway's media
legs only have host candidates on 127.0.0.1), listens for TURN over UDP, TCP
and TLS (a self-signed certificate), and logs to a file that
:meth:`Coturn.peer_usage` reads its relay counters from.

Without ``turnserver`` the tests skip, unless ``SOFTPHONE_REQUIRE_TURN=1``
(CI) makes that a failure; the same goes for ``iptables`` in :meth:`block_udp`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from softphone.gateway.tls import generate_self_signed
from softphone.gateway.traversal import turn_credential

REQUIRE_ENV = "SOFTPHONE_REQUIRE_TURN"
REALM = "softphone.test"
STATIC_USER, STATIC_PASSWORD = "alice", "turn-password"
SHARED_SECRET = "softphone-turn-shared-secret"
RELAY_PORTS = (20000, 29999)
"""Relay port range: below Linux's ephemeral ports, on the server's own address."""
Transport = Literal["udp", "tcp", "tls"]
Auth = Literal["secret", "static"]
_USAGE = re.compile(r"peer usage: realm=<[^>]*>, username=<([^>]*)>, rp=(\d+), rb=\d+, sp=(\d+),")


def require_or_skip(what: str, available: bool, how: str) -> None:
    """Skip (or fail under ``SOFTPHONE_REQUIRE_TURN=1``) when ``what`` is missing."""
    if available:
        return
    message = f"{what} is not available ({how})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(f"{message}; set {REQUIRE_ENV}=1 to make this a failure")


def _loopback_address() -> str:
    rng = random.SystemRandom()
    return f"127.{rng.randint(64, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


def _free_port(host: str) -> int:
    """A port free for both TCP and UDP on ``host`` (TURN listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free TCP+UDP port on {host}")


@dataclass(frozen=True)
class PeerUsage:
    """coturn's ``peer usage`` counters of one closed allocation."""

    username: str
    packets_from_peer: int
    packets_to_peer: int


@dataclass
class Coturn:
    """One ``turnserver`` process: start, kill and restart it, read what it relayed."""

    workdir: Path
    auth: Auth = "secret"
    host: str = field(default_factory=_loopback_address)
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    blocked: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert = self.workdir / "turn-cert.pem"
        self.key = self.workdir / "turn-key.pem"
        self.log_file = self.workdir / "turnserver.log"
        generate_self_signed(self.cert, self.key, hosts=("localhost", self.host))
        self.port = self.port or _free_port(self.host)
        self.tls_port = self.tls_port or _free_port(self.host)

    # -- process ---------------------------------------------------------------------
    def command(self) -> list[str]:
        binary = shutil.which("turnserver") or "turnserver"
        auth = (
            ["--use-auth-secret", f"--static-auth-secret={SHARED_SECRET}"]
            if self.auth == "secret"
            else ["--lt-cred-mech", f"--user={STATIC_USER}:{STATIC_PASSWORD}"]
        )
        return [
            binary,
            "-n",  # no configuration file
            f"--listening-ip={self.host}",
            f"--relay-ip={self.host}",
            f"--listening-port={self.port}",
            f"--tls-listening-port={self.tls_port}",
            f"--min-port={RELAY_PORTS[0]}",
            f"--max-port={RELAY_PORTS[1]}",
            f"--realm={REALM}",
            *auth,
            f"--cert={self.cert}",
            f"--pkey={self.key}",
            "--no-dtls",
            "--allow-loopback-peers",
            "--no-cli",
            "--verbose",  # session lines, with the relay counters, in the log
            "--no-stdout-log",
            "--simple-log",
            f"--log-file={self.log_file}",
            f"--userdb={self.workdir / 'turndb'}",
            f"--pidfile={self.workdir / 'turnserver.pid'}",
        ]

    async def start(self) -> Coturn:
        """Start the server and wait until it answers over UDP, TCP and TLS."""
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited: {self.log_text(offset)[-2000:]}")
            if await self._answers():
                return self
            await asyncio.sleep(0.05)
        self.kill()
        tail = self.log_text(offset)[-2000:]
        raise RuntimeError(f"turnserver did not open its listeners: {tail}")

    async def _answers(self) -> bool:
        """A STUN Binding over UDP gets a response and both TCP listeners accept."""
        loop = asyncio.get_running_loop()
        try:
            for port in (self.port, self.tls_port):
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, port), timeout=0.5
                )
                writer.close()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.setblocking(False)
                transaction = os.urandom(12)
                request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
                await loop.sock_sendto(udp, request, (self.host, self.port))
                response = await asyncio.wait_for(loop.sock_recv(udp, 2048), timeout=0.5)
                return response[8:20] == transaction
        except (OSError, TimeoutError):
            return False

    def kill(self) -> None:
        """SIGKILL: every allocation and TCP/TLS connection is gone at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    async def restart(self) -> None:
        """Kill and start again on the same address and ports (allocations are lost)."""
        self.kill()
        await self.start()

    def stop(self) -> None:
        """Terminate the server and remove every firewall rule it added."""
        self.unblock_udp()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    # -- what clients use ------------------------------------------------------------
    def url(self, transport: Transport) -> str:
        """``turn:…?transport=udp|tcp`` or ``turns:…?transport=tcp`` (TLS) of this server."""
        if transport == "tls":
            return f"turns:{self.host}:{self.tls_port}?transport=tcp"
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def credentials(self, user: str = "ACtest") -> tuple[str, str]:
        """A username/password the server accepts (TURN REST API or the static user)."""
        if self.auth == "static":
            return STATIC_USER, STATIC_PASSWORD
        credential = turn_credential(SHARED_SECRET, user, ttl_s=3600, now=time.time())
        return credential.username, credential.password

    def ice_server(self, *transports: Transport) -> dict[str, Any]:
        """One JS-style ``iceServers`` entry with a URL per transport, in that order."""
        username, password = self.credentials()
        return {
            "urls": [self.url(t) for t in transports or ("udp",)],
            "username": username,
            "credential": password,
        }

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    # -- what it did -----------------------------------------------------------------
    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def peer_usage(self) -> list[PeerUsage]:
        """Relay counters of every allocation closed so far (coturn logs them on close).

        Sessions without a username (our readiness probes) are left out.
        """
        return [
            PeerUsage(m.group(1), int(m.group(2)), int(m.group(3)))
            for m in _USAGE.finditer(self.log_text())
            if m.group(1)
        ]

    # -- the network -----------------------------------------------------------------
    def _udp_rule(self) -> list[str]:
        return [
            "OUTPUT",
            "-o",
            "lo",
            "-p",
            "udp",
            "-d",
            self.host,
            "--dport",
            str(self.port),
            "-m",
            "comment",
            "--comment",
            f"softphone-test-turn-{self.host}",
            "-j",
            "DROP",
        ]

    def block_udp(self) -> None:
        """Drop every UDP datagram sent to this server's listener (iptables, its address only).

        TURN over UDP then times out, as behind a firewall that lets only TCP
        out; TCP and TLS to the server and the relayed media (between its relay
        ports and the peers) are untouched.
        """
        iptables = shutil.which("iptables")
        require_or_skip("iptables", iptables is not None, "apt-get install iptables")
        assert iptables is not None
        rule = self._udp_rule()
        result = subprocess.run(
            [iptables, "-w", "-I", *rule], capture_output=True, text=True, check=False
        )
        require_or_skip(
            "iptables (root with CAP_NET_ADMIN)",
            result.returncode == 0,
            result.stderr.strip() or "iptables -I failed",
        )
        self.blocked.append(rule)

    def blocked_udp_packets(self) -> int:
        """How many datagrams the :meth:`block_udp` rule dropped so far."""
        iptables = shutil.which("iptables") or "iptables"
        out = subprocess.run(
            [iptables, "-w", "-L", "OUTPUT", "-v", "-x", "-n"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        comment = f"softphone-test-turn-{self.host}"
        return sum(int(line.split()[0]) for line in out.splitlines() if comment in line)

    def unblock_udp(self) -> None:
        """Remove the rules :meth:`block_udp` added."""
        iptables = shutil.which("iptables") or "iptables"
        while self.blocked:
            rule = self.blocked.pop()
            subprocess.run([iptables, "-w", "-D", *rule], capture_output=True, check=False)


async def _started(tmp_path: Path, auth: Auth) -> Coturn:
    require_or_skip("turnserver", shutil.which("turnserver") is not None, "apt-get install coturn")
    server = Coturn(tmp_path / f"coturn-{auth}", auth=auth)
    try:
        return await server.start()
    except BaseException:
        server.stop()
        raise


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    """A running coturn accepting TURN REST API credentials (its shared secret)."""
    server = await _started(tmp_path, "secret")
    yield server
    server.stop()


@pytest.fixture
async def coturn_static_user(tmp_path: Path) -> AsyncIterator[Coturn]:
    """A running coturn with one static long-term user (``--user``)."""
    server = await _started(tmp_path, "static")
    yield server
    server.stop()
