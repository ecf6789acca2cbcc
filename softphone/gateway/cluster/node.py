"""One gateway's membership of a cluster: presence and call links through Redis.

:class:`ClusterNode` is the I/O around the pure parts of this package:

* it publishes the gateway's registered addresses (``directory``) as they change and
  every ``ttl / 3`` seconds, so a registration on one gateway is visible to all;
* it looks up where an identity is registered elsewhere and gives the call router a
  :class:`~softphone.gateway.cluster.remote_client.RemoteClient` per such gateway;
* it reads the gateway's own channel and feeds what other gateways send into the
  router (a ring, or a frame on an existing link); frames for other gateways go out
  in order through one writer.

Redis going away never touches a call in progress (media runs gateway to gateway,
not through Redis): frames wait in order until it is back, presence is re-published
then, and the log says so once per outage. Needs the ``redis`` package
(``pip install 'softphone[redis]'``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from softphone.gateway.calls import CallClient, CallRouter
from softphone.gateway.cluster import directory, envelope
from softphone.gateway.cluster.remote_client import RemoteClient
from softphone.gateway.presence import Address, Presence
from softphone.media.sdp import negotiated_codec
from softphone.signaling.codes import TEMPORARILY_UNAVAILABLE
from softphone.signaling.messages import Hangup

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "softphone gateway --redis needs the redis package: pip install 'softphone[redis]'"
    ) from exc

log = logging.getLogger("softphone.gateway.cluster")

RETRY_S = 1.0
"""Pause between attempts to reach Redis while it is away."""
COMMAND_TIMEOUT_S = 3.0
"""Longest a presence lookup may take before the call goes on without the cluster."""
STOP_FLUSH_S = 2.0
"""How long stopping waits for the last frames (hangups of ending calls) to go out."""
LINK_GRACE_S = 30.0
"""A link no call uses any more is forgotten after this long."""
UNDELIVERED_RETRY_S = 10.0
"""How long a frame nobody on the far gateway's channel took is retried (that gateway
may be re-subscribing after a Redis restart) before it is given up."""
POLL_S = 0.25
"""Longest single wait for a frame: the listener checks whether it must stop this often
(redis-py can swallow a task cancellation that lands in its own read timeout)."""

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
PRESENCE_QUEUE = ""
"""The outbox of presence updates (the others are per far gateway)."""
Job = Callable[[], Awaitable[None]]


class _Undelivered(Exception):
    """Published, but nobody listens on the far gateway's channel yet: try again."""


class _Outbox:
    """Jobs for one destination, run in order by one writer task."""

    def __init__(self) -> None:
        self.jobs: collections.deque[Job] = collections.deque()
        self.ready = asyncio.Event()


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class ClusterNode:
    """The gateway ``gateway_id`` in the cluster that shares the Redis at ``url``."""

    def __init__(
        self,
        url: str,
        gateway_id: str,
        router: CallRouter,
        presence: Presence,
        *,
        edge: str = "",
        region: str = "",
        ttl_s: float = directory.DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.gateway_id = gateway_id
        self.router = router
        self.presence = presence
        self.edge = edge
        self.region = region
        self.ttl_s = ttl_s
        self._clock = clock
        # no silent retries inside the client: this node's loops retry, and log it
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.links: dict[str, tuple[RemoteClient, float]] = {}
        """Live links by id, with when each was made (monotonic)."""
        self._outboxes: dict[str, _Outbox] = {}
        """Per far gateway (so one that is gone delays no other), plus presence."""
        self.connected = asyncio.Event()
        """Set while this node's channel subscription is up."""
        self._withdrawn: set[Address] = set()
        """Addresses gone here whose Redis entry is not known to be removed yet."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.reconnects = 0
        """How many times the subscription came back after Redis went away."""

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start listening and publishing; an unreachable Redis is retried, not fatal."""
        self.router.remote_targets = self.remote_targets
        self.presence.on_change = self.presence_changed
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name=f"cluster-listen-{self.gateway_id}")
        ]

    async def stop(self) -> None:
        """Send what is queued (briefly), withdraw this gateway's presence, disconnect."""
        self.router.remote_targets = None
        self.presence.on_change = None
        deadline = asyncio.get_running_loop().time() + STOP_FLUSH_S
        while (
            any(box.jobs for box in self._outboxes.values())
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.02)
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_FLUSH_S)
        self._tasks = []
        with contextlib.suppress(*_FAILURES):
            await asyncio.wait_for(self._withdraw_all(), STOP_FLUSH_S)
        with contextlib.suppress(*_FAILURES):
            await self._redis.aclose()

    # -- presence ----------------------------------------------------------------------
    def presence_changed(self, address: Address, present: bool) -> None:
        """:class:`Presence` hook: publish or withdraw ``address`` for this gateway."""
        if present:
            self._withdrawn.discard(address)
            self._queue(PRESENCE_QUEUE, lambda: self._publish_addresses([address]))
        else:
            self._withdrawn.add(address)
            self._queue(PRESENCE_QUEUE, self._withdraw_pending)

    async def _publish_addresses(self, addresses: list[Address]) -> None:
        expires = self._clock() + self.ttl_s
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_sid, identity in addresses:
                key = directory.presence_key(account_sid, identity)
                pipe.zadd(key, {self.gateway_id: expires})
                pipe.zremrangebyscore(key, "-inf", self._clock())
                pipe.expire(key, int(self.ttl_s * 2))
            pipe.set(
                directory.gateway_key(self.gateway_id),
                json.dumps({"edge": self.edge, "region": self.region}),
                ex=int(self.ttl_s * 2),
            )
            await pipe.execute()

    async def _withdraw_pending(self) -> None:
        pending = list(self._withdrawn)
        if not pending:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_sid, identity in pending:
                pipe.zrem(directory.presence_key(account_sid, identity), self.gateway_id)
            await pipe.execute()
        self._withdrawn.difference_update(pending)

    async def _withdraw_all(self) -> None:
        self._withdrawn.update(self.presence.addresses())
        await self._withdraw_pending()
        await self._redis.delete(directory.gateway_key(self.gateway_id))

    async def _refresh(self) -> int:
        """Re-publish every local address (and withdraw stale ones); how many published."""
        addresses = self.presence.addresses()
        await self._withdraw_pending()
        await self._publish_addresses(addresses)
        return len(addresses)

    async def remote_targets(
        self, account_sid: str, identity: str, caller_offer: str
    ) -> list[CallClient]:
        """The router's hook: one stand-in per other gateway where ``identity`` is registered.

        The gateway-to-gateway media leg is offered with the codec the caller's offer
        puts first, so that the caller's RTP is forwarded as it is. Redis unreachable:
        none (the call rings this gateway's devices only).
        """
        key = directory.presence_key(account_sid, identity)
        try:
            entries = await asyncio.wait_for(
                self._redis.zrange(key, 0, -1, withscores=True), COMMAND_TIMEOUT_S
            )
        except _FAILURES as exc:
            log.warning(
                "cluster: cannot look up client:%s in Redis (%s): ringing this gateway only",
                identity,
                exc or type(exc).__name__,
            )
            return []
        scored = cast(list[tuple[bytes, float]], entries)
        codec = negotiated_codec(caller_offer)
        targets: list[CallClient] = []
        for gateway in directory.live_gateways(scored, self._clock(), self.gateway_id):
            link = "LK" + secrets.token_hex(12)
            client = RemoteClient(
                link=link,
                own_gateway=self.gateway_id,
                peer_gateway=gateway,
                account_sid=account_sid,
                identity=identity,
                publish=self._publish,
                codec=codec.name if codec is not None else None,
            )
            self.links[link] = (client, time.monotonic())
            targets.append(client)
        return targets

    # -- outgoing frames ---------------------------------------------------------------
    def _publish(self, gateway: str, item: envelope.Envelope) -> None:
        since = time.monotonic()
        self._queue(gateway, lambda: self._send(gateway, item, since))

    def _queue(self, destination: str, job: Job) -> None:
        box = self._outboxes.get(destination)
        if box is None:
            box = self._outboxes[destination] = _Outbox()
            name = f"cluster-write-{self.gateway_id}-{destination or 'presence'}"
            self._tasks.append(asyncio.create_task(self._write_loop(box), name=name))
        box.jobs.append(job)
        box.ready.set()

    async def _send(self, gateway: str, item: envelope.Envelope, since: float) -> None:
        """Publish ``item``; retried while nobody takes it, for a while, then given up."""
        receivers = await self._redis.publish(directory.channel(gateway), envelope.encode(item))
        if receivers > 0:
            return
        if time.monotonic() - since < UNDELIVERED_RETRY_S:
            raise _Undelivered
        log.warning(
            "cluster: gateway %s is not listening: %s of link %s given up",
            gateway,
            "ring" if isinstance(item, envelope.Ring) else item.kind,
            item.link,
        )
        await self._far_side_gone(item.link)

    async def _far_side_gone(self, link: str) -> None:
        """The far gateway cannot get the link's frames: its leg hangs up here."""
        found = self.links.pop(link, None)
        if found is None or found[0].callsid is None:
            return
        client = found[0]
        client.closed = True
        error = {"code": TEMPORARILY_UNAVAILABLE, "message": "Gateway unreachable"}
        await self.router.on_message(client, Hangup(callsid=client.callsid, error=error))

    async def _write_loop(self, box: _Outbox) -> None:
        """Run ``box``'s jobs in order; one that fails for Redis is retried until it works."""
        while not self._stopping:
            while not box.jobs:
                box.ready.clear()
                await box.ready.wait()
            job = box.jobs[0]
            try:
                await job()
            except (_Undelivered, *_FAILURES):
                # the listener notices an outage too and logs it; try again shortly
                await asyncio.sleep(RETRY_S / 4)
                continue
            except Exception:
                log.exception("cluster: dropping a frame that failed")
            box.jobs.popleft()

    # -- incoming frames ---------------------------------------------------------------
    async def _listen_loop(self) -> None:
        """Subscribe to this gateway's channel; on any Redis failure, retry until back."""
        interval = directory.refresh_interval(self.ttl_s)
        was_up = False
        outage_logged = False
        target = redacted(self.url)
        while not self._stopping:
            pubsub = self._redis.pubsub()
            try:
                # presence first: a failure after subscribing would drop frames unread
                count = await self._refresh()
                await pubsub.subscribe(directory.channel(self.gateway_id))
                if was_up:
                    self.reconnects += 1
                    log.info(
                        "cluster: Redis at %s is back: presence re-published (%d addresses)",
                        target,
                        count,
                    )
                else:
                    log.info(
                        "cluster: gateway %s joined Redis at %s (%d addresses published)",
                        self.gateway_id,
                        target,
                        count,
                    )
                was_up, outage_logged = True, False
                self.connected.set()
                next_refresh = time.monotonic() + interval
                while not self._stopping:
                    wait = min(POLL_S, max(0.0, next_refresh - time.monotonic()))
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                    if message is not None and message.get("type") == "message":
                        await self._on_frame(message["data"])
                    if time.monotonic() >= next_refresh:
                        await self._refresh()
                        self._sweep_links()
                        next_refresh = time.monotonic() + interval
            except _FAILURES as exc:
                self.connected.clear()
                # connections from before the outage are dead: make every later one fresh
                with contextlib.suppress(*_FAILURES):
                    await self._redis.connection_pool.disconnect()
                if not outage_logged:
                    log.warning(
                        "cluster: Redis at %s unreachable (%s): calls in progress go on, "
                        "cross-gateway frames wait; retrying every %g s",
                        target,
                        exc or type(exc).__name__,
                        RETRY_S,
                    )
                    outage_logged = True
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _on_frame(self, data: Any) -> None:
        try:
            item = envelope.decode(data)
        except envelope.EnvelopeError as exc:
            log.warning("cluster: dropping a frame that is not ours: %s", exc)
            return
        try:
            if isinstance(item, envelope.Ring):
                await self._on_ring(item)
            else:
                await self._on_event(item)
        except Exception:
            log.exception("cluster: frame %s of link %s failed", type(item).__name__, item.link)

    async def _on_ring(self, ring: envelope.Ring) -> None:
        caller = str(ring.parameters.get("From", "")).removeprefix("client:")
        client = RemoteClient(
            link=ring.link,
            own_gateway=self.gateway_id,
            peer_gateway=ring.sender,
            account_sid=ring.account_sid,
            identity=caller,
            publish=self._publish,
            callsid=ring.link,
        )
        self.links[ring.link] = (client, time.monotonic())
        await self.router.ring_relayed(
            client,
            link=ring.link,
            identity=ring.identity,
            offer_sdp=ring.sdp,
            parameters={k: str(v) for k, v in ring.parameters.items()},
        )

    async def _on_event(self, event: envelope.LegEvent) -> None:
        found = self.links.get(event.link)
        callsid = found[0].callsid if found is not None else None
        if found is None or callsid is None:
            log.debug("cluster: %s for unknown link %s", event.kind, event.link)
            return
        client = found[0]
        if envelope.is_final(event):
            client.closed = True  # the far side is gone: nothing more goes there
            del self.links[event.link]
        await self.router.on_message(client, envelope.client_frame(event, callsid))

    def _sweep_links(self) -> None:
        """Forget links that ended or that no call uses any more."""
        in_use = {
            id(leg.conn) for call in self.router.calls for leg in [call.caller, *call.callees]
        }
        cutoff = time.monotonic() - LINK_GRACE_S
        for link, (client, made) in list(self.links.items()):
            if client.closed or (id(client) not in in_use and made < cutoff):
                del self.links[link]


def new_gateway_id(edge: str) -> str:
    """A cluster-unique id for a gateway process of ``edge``."""
    return f"{edge}-{secrets.token_hex(4)}"
