"""Fault injection on 127.0.0.1: a TCP proxy that can cut, reset, stall or refuse,
and a switch that blackholes the media path (UDP relays in front of media ports).

Put the proxy between a Device and the gateway (``chunderw=proxy.url``) and break
the signaling socket on demand, the way networks break it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from benchmarks.udp_relay import DROP, PASS, Datagram, Decision, UdpRelay
from benchmarks.wire import GatewayChild


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port, with faults on demand."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.refusing = False
        self._running = asyncio.Event()
        self._running.set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self.connections_accepted = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/signal"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self.refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        self._pairs.discard(pair)
        for w in pair:
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await self._running.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def cut(self) -> None:
        """Close every proxied connection cleanly (FIN both ways, no WebSocket close)."""
        for client, upstream in list(self._pairs):
            client.close()
            upstream.close()
        self._pairs.clear()

    def reset(self) -> None:
        """Abort every proxied connection with a TCP RST."""
        for client, upstream in list(self._pairs):
            for w in (client, upstream):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                w.transport.abort()
        self._pairs.clear()

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) forwarding bytes while keeping the sockets open."""
        if stalled:
            self._running.clear()
        else:
            self._running.set()


class GatewayProcess(GatewayChild):
    """``softphone gateway`` in its own process: one edge, its log discarded."""

    def __init__(self, edge: str) -> None:
        super().__init__(None, "--edge", edge, "--log-level", "warn")
        self.edge = edge

    def restart_on_same_port(self) -> None:
        """Forget the dead process so :meth:`start` can launch a new one on the port."""
        self.proc = None


class NatSwitch:
    """One switch for every relay of a test: blackhole or restore the whole path.

    Each relay (:class:`benchmarks.udp_relay.UdpRelay` in front of one media port,
    like a NAT) drops every datagram in both directions, STUN and DTLS included,
    while :attr:`blackholed` is set.
    """

    def __init__(self) -> None:
        self.blackholed = False
        self.relays: list[UdpRelay] = []

    def _policy(self, datagram: Datagram) -> Decision:
        return DROP if self.blackholed else PASS

    def relay(self, target_port: int) -> UdpRelay:
        """A new relay in front of ``127.0.0.1:target_port`` (peers send to its ``port_for_a``)."""
        relay = UdpRelay(target=("127.0.0.1", target_port))
        relay.set_policy(self._policy)
        self.relays.append(relay)
        return relay

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
