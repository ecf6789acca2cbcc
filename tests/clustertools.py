"""A real ``redis-server`` for cluster tests, and two gateways sharing it."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from softphone.core.device import Device
from softphone.gateway.accounts import AccountStore
from softphone.gateway.cluster import directory
from softphone.gateway.server import Gateway, GatewayConfig

REDIS_SERVER = shutil.which("redis-server")
TTL_S = 3.0
"""Presence entries count this long without refresh (a refresh every second)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with no persistence; can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None
        self.client = aioredis.Redis.from_url(self.url)

    async def start(self) -> None:
        assert REDIS_SERVER is not None
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(250):
            try:
                if await self.client.ping():
                    return
            except (OSError, aioredis.ConnectionError):
                await asyncio.sleep(0.02)
        raise AssertionError("redis-server did not start")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()
        await self.client.connection_pool.disconnect()

    async def gateways_of(self, account_sid: str, identity: str) -> set[str]:
        """The gateway ids whose presence entry for that identity is in Redis now."""
        members = await self.client.zrange(directory.presence_key(account_sid, identity), 0, -1)
        return {m.decode() for m in members}

    async def wait_presence(
        self, account_sid: str, identity: str, gateway_id: str, present: bool = True
    ) -> None:
        for _ in range(500):
            if (gateway_id in await self.gateways_of(account_sid, identity)) is present:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{identity} on {gateway_id}: presence never became {present}")


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A fresh redis-server on a free port (the test is skipped without the binary)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer()
    await server.start()
    yield server
    await server.stop()
    await server.client.aclose()


@pytest.fixture
async def cluster(
    accounts: AccountStore, loopback_media: None, redis_server: RedisServer
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Gateways ``gw-a`` and ``gw-b`` on their own ports, sharing ``redis_server``."""
    gateways = [
        Gateway(
            accounts,
            GatewayConfig(
                port=0,
                heartbeat_interval_s=1.0,
                edge=name,
                redis_url=redis_server.url,
                gateway_id=f"gw-{name}",
                cluster_ttl_s=TTL_S,
            ),
        )
        for name in ("a", "b")
    ]
    for gateway in gateways:
        await gateway.start()
    for _ in range(500):
        if all(gw.cluster is not None and gw.cluster.connected.is_set() for gw in gateways):
            break
        await asyncio.sleep(0.02)
    yield gateways[0], gateways[1]
    for gateway in gateways:
        await gateway.stop()


DeviceOn = Callable[..., Device]


@pytest.fixture
async def device_on(make_token: Callable[..., str]) -> AsyncIterator[DeviceOn]:
    """``device_on(gateway, "alice", **options)``: a Device of that gateway, destroyed after."""
    devices: list[Device] = []

    def factory(gateway: Gateway, identity: str, **options: Any) -> Device:
        options.setdefault("chunderw", gateway.url)
        device = Device(make_token(identity), options)
        devices.append(device)
        return device

    yield factory
    for device in devices:
        await device.destroy()


class FailoverProxy:
    """A TCP address in front of several gateways: each connection goes to the first
    one that accepts it, as a load balancer with health checks (or a DNS name shared by
    the edges) would send a reconnecting client to an edge that is still up."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets
        """Gateway ports on 127.0.0.1, in order of preference."""
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/signal"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def drop(self) -> None:
        """Cut every connection through the proxy (a network blip: clients reconnect)."""
        for writer in list(self._clients):
            writer.transport.abort()
        self._clients.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        for port in self.targets:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            for task in (
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ):
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
