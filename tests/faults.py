"""Fault injection on 127.0.0.1: a TCP proxy that can cut, reset, stall or refuse.

Put it between a Device and the gateway (``chunderw=proxy.url``) and break the
signaling socket on demand, the way networks break it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

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


class _NatProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)  # type: ignore[operator]


class UdpNat:
    """A UDP relay in front of one media port, like a NAT on the path (127.0.0.1 only).

    Peers send to :attr:`port`; each peer gets its own upstream socket towards the
    target, so the target sees the relay's address (a peer-reflexive candidate) and
    replies come back through the relay. While the shared ``switch`` says so, every
    datagram in both directions is dropped.
    """

    def __init__(self, target_port: int, switch: NatSwitch) -> None:
        self.target = ("127.0.0.1", target_port)
        self.switch = switch
        self.port = 0
        self._front: _NatProtocol | None = None
        self._upstreams: dict[tuple[str, int], _NatProtocol] = {}
        self._pending: set[asyncio.Future[None]] = set()
        self.forwarded = 0
        self.dropped = 0

    async def start(self) -> UdpNat:
        loop = asyncio.get_running_loop()
        _, front = await loop.create_datagram_endpoint(
            lambda: _NatProtocol(self._from_peer), local_addr=("127.0.0.1", 0)
        )
        self._front = front
        assert front.transport is not None
        self.port = front.transport.get_extra_info("sockname")[1]
        return self

    def _from_peer(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.switch.blackholed:
            self.dropped += 1
            return
        upstream = self._upstreams.get(addr)
        if upstream is None or upstream.transport is None:
            task = asyncio.ensure_future(self._open_upstream(addr, data))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        self.forwarded += 1
        upstream.transport.sendto(data, self.target)

    async def _open_upstream(self, peer: tuple[str, int], first: bytes) -> None:
        loop = asyncio.get_running_loop()

        def back(data: bytes, _: tuple[str, int]) -> None:
            if self.switch.blackholed:
                self.dropped += 1
            elif self._front is not None and self._front.transport is not None:
                self.forwarded += 1
                self._front.transport.sendto(data, peer)

        if peer not in self._upstreams:
            _, proto = await loop.create_datagram_endpoint(
                lambda: _NatProtocol(back), local_addr=("127.0.0.1", 0)
            )
            self._upstreams[peer] = proto
        transport = self._upstreams[peer].transport
        if transport is not None and not self.switch.blackholed:
            transport.sendto(first, self.target)

    def close(self) -> None:
        for proto in [self._front, *self._upstreams.values()]:
            if proto is not None and proto.transport is not None:
                proto.transport.close()


class NatSwitch:
    """One switch for every relay of a test: blackhole or restore the whole path."""

    def __init__(self) -> None:
        self.blackholed = False
        self.relays: list[UdpNat] = []

    async def relay(self, target_port: int) -> UdpNat:
        nat = await UdpNat(target_port, self).start()
        self.relays.append(nat)
        return nat

    def close(self) -> None:
        for nat in self.relays:
            nat.close()
