"""One gateway's membership of a cluster: presence and call links through Redis.

:class:`ClusterNode` is the I/O around the pure parts of this package:

* it publishes the gateway's registered addresses (``directory``) as they change and
  every ``ttl / 3`` seconds, so a registration on one gateway is visible to all;
* it looks up where an identity is registered elsewhere and gives the call router a
  :class:`~softphone.gateway.cluster.remote_client.RemoteClient` per such gateway;
* it reads the gateway's own channel and feeds what other gateways send into the
  router (a ring, or a frame on an existing link); frames for other gateways go out
  in order through one writer;
* it records the legs of cross-gateway calls (``directory.leg_key``), watches the
  gateways at the far end of its links, and when one dies holds the calls for their
  clients' reconnect windows and lets a client that reconnects here take its leg over
  (:meth:`ClusterNode.adopt`): the call goes on with this gateway's side;
* a client that reconnects here while the gateway holding its leg is alive is served
  by that gateway through this one: its frames are relayed there and the replies back
  (``envelope.Attach`` / ``Relay``), so a reconnect token works on every gateway.

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

from softphone.gateway.calls import BridgedCall, CallClient, CallRouter, Leg
from softphone.gateway.cluster import directory, envelope
from softphone.gateway.cluster.relayed_client import RelayedClient
from softphone.gateway.cluster.remote_client import RemoteClient
from softphone.gateway.presence import Address, Presence
from softphone.media.sdp import negotiated_codec
from softphone.signaling.codes import TEMPORARILY_UNAVAILABLE
from softphone.signaling.messages import (
    C2S,
    S2C,
    Cancel,
    Hangup,
    Heartbeat,
    Invite,
    MalformedMessage,
    Message,
    decode,
    encode,
)

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

PEER_CHECK_S = 1.0
"""How often the gateways at the far end of live links are checked."""
PEER_GONE_S = 5.0
"""A gateway nobody has listened for on its channel this long is dead (longer than
a gateway takes to re-subscribe after a Redis restart)."""
LEG_RECORD_TTL_S = 12 * 3600.0
"""Leg records of calls whose gateway died without deleting them expire after this."""

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
        self._absent_since: dict[str, float] = {}
        """Far gateways of live links with nobody on their channel, since when."""
        self.gone: set[str] = set()
        """Far gateways found dead (their links' calls were held or ended)."""
        self._records: dict[int, list[str]] = {}
        """Leg-record keys written per call (by ``id``), deleted when it ends."""
        self.relayed: dict[str, RelayedClient] = {}
        """Clients of other gateways whose legs live here, by relay link."""
        self.relaying: dict[str, tuple[CallClient, str]] = {}
        """This gateway's clients whose legs live elsewhere: relay link -> (socket,
        the gateway holding the leg)."""
        self._relay_routes: dict[tuple[int, str], str] = {}
        """(socket id, CallSid) -> relay link, for the frames those clients send."""

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start listening and publishing; an unreachable Redis is retried, not fatal."""
        self.router.remote_targets = self.remote_targets
        self.router.adopt_remote = self.adopt
        self.router.leg_token_told = self.leg_token_told
        self.router.call_ended = self.call_ended
        self.router.relay_frame = self.relay_frame
        self.router.client_gone = self.client_gone
        self.presence.on_change = self.presence_changed
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name=f"cluster-listen-{self.gateway_id}")
        ]

    async def stop(self) -> None:
        """Send what is queued (briefly), withdraw this gateway's presence, disconnect."""
        self.router.remote_targets = None
        self.router.adopt_remote = None
        self.router.leg_token_told = None
        self.router.call_ended = None
        self.router.relay_frame = None
        self.router.client_gone = None
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
            item.kind if isinstance(item, envelope.LegEvent) else type(item).__name__.lower(),
            item.link,
        )
        await self._far_side_gone(item.link)

    async def _far_side_gone(self, link: str) -> None:
        """The far gateway cannot get the link's frames: its leg hangs up here."""
        relaying = self.relaying.pop(link, None)
        if relaying is not None:  # the gateway holding a relayed client's call is gone
            conn = relaying[0]
            error = {"code": TEMPORARILY_UNAVAILABLE, "message": "Gateway unreachable"}
            for route, routed in list(self._relay_routes.items()):
                if routed == link:
                    del self._relay_routes[route]
                    conn.send(Hangup(callsid=route[1], error=error))
            return
        found = self.links.get(link)
        if found is None or found[0].callsid is None or found[0].peer_gateway in self.gone:
            return  # a dead gateway's links are held for their clients (see _peer_gone)
        del self.links[link]
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
                next_peer_check = time.monotonic() + PEER_CHECK_S
                while not self._stopping:
                    due = min(next_refresh, next_peer_check)
                    wait = min(POLL_S, max(0.0, due - time.monotonic()))
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                    if message is not None and message.get("type") == "message":
                        await self._on_frame(message["data"])
                    if time.monotonic() >= next_peer_check:
                        await self._check_peers()
                        next_peer_check = time.monotonic() + PEER_CHECK_S
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
            elif isinstance(item, envelope.Attach):
                await self._on_attach(item)
            elif isinstance(item, envelope.Relay):
                await self._on_relay(item)
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

    # -- cross-gateway legs: records, dead gateways, take-over ---------------------------
    def leg_token_told(self, call: BridgedCall, leg: Leg) -> None:
        """Router hook: record ``leg`` (a client's) so any gateway can serve its reconnect.

        With the link of its call to another gateway, if it has one (that gateway may
        take the leg over should this one die).
        """
        if isinstance(leg.conn, RemoteClient):
            return
        link = next(
            (
                other.conn
                for other in (call.caller, call.connected)
                if other is not None and isinstance(other.conn, RemoteClient)
            ),
            None,
        )
        record = json.dumps(
            {
                "callsid": leg.callsid,
                "account": leg.account_sid,
                "identity": leg.identity,
                "token": directory.token_digest(leg.reconnect_token),
                "link": link.link if link is not None else "",
                "gateway": self.gateway_id,
                "peer": link.peer_gateway if link is not None else "",
                "hold_s": leg.conn.reconnect_timeout_s,
            },
            separators=(",", ":"),
        )
        keys = [directory.leg_key(leg.callsid)]
        if link is not None:
            keys.append(directory.link_key(link.link, self.gateway_id))
        self._records[id(call)] = list({*self._records.get(id(call), []), *keys})

        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, record, ex=int(LEG_RECORD_TTL_S))
                await pipe.execute()

        self._queue(PRESENCE_QUEUE, write)

    def call_ended(self, call: BridgedCall) -> None:
        """Router hook: forget the leg records of ``call``."""
        keys = self._records.pop(id(call), None)
        if keys:
            self._queue(PRESENCE_QUEUE, lambda: self._delete(keys))

    async def _delete(self, keys: list[str]) -> None:
        await self._redis.delete(*keys)

    async def adopt(self, conn: CallClient, invite: Invite) -> CallClient | bool:
        """Router hook: where a reconnect for a leg this gateway does not hold goes.

        The leg's record (by CallSid) must match the token and the client's account
        and identity. If the gateway holding the leg is alive, the reconnect and all
        the client's later frames for that call are relayed to it (True). If it is
        gone and the record names this gateway as the far end of the leg's link, the
        client takes the leg over here: the link's stand-in is returned. False
        otherwise: the router refuses the reconnect as before.
        """
        try:
            raw = await asyncio.wait_for(
                self._redis.get(directory.leg_key(invite.callsid)), COMMAND_TIMEOUT_S
            )
        except _FAILURES as exc:
            log.warning("cluster: cannot look up call %s (%s)", invite.callsid, exc)
            return False
        try:
            record = json.loads(raw) if raw is not None else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return False
        digest = directory.token_digest(invite.reconnect or "")
        if (
            record.get("account") != conn.account_sid
            or record.get("identity") != conn.identity
            or not secrets.compare_digest(str(record.get("token", "")), digest)
        ):
            log.info("cluster: reconnect for %s does not match its record", invite.callsid)
            return False
        held_by, link = str(record.get("gateway", "")), str(record.get("link", ""))
        if held_by == self.gateway_id:
            return False  # ours, and the router does not know it: the call is over
        if not await self._is_gone(held_by):
            self._relay_to(held_by, conn, invite)
            return True
        found = self.links.get(link)
        if record.get("peer") != self.gateway_id or found is None or found[0].closed:
            log.info(
                "cluster: call %s died with gateway %s (its other side is not here)",
                invite.callsid,
                held_by,
            )
            return False
        client = found[0]
        client.closed = True  # nothing more goes to the dead gateway
        del self.links[link]
        stale = [directory.leg_key(invite.callsid), directory.link_key(link, held_by)]
        self._queue(PRESENCE_QUEUE, lambda: self._delete(stale))
        return client

    def _relay_to(self, gateway: str, conn: CallClient, invite: Invite) -> None:
        """Serve ``conn``'s call on ``gateway`` through this one, starting with ``invite``."""
        assert conn.account_sid is not None and conn.identity is not None
        link = "RL" + secrets.token_hex(12)
        self.relaying[link] = (conn, gateway)
        self._relay_routes[(conn.id, invite.callsid)] = link
        log.info(
            "cluster: client:%s reconnected here for call %s of gateway %s: relaying it there",
            conn.identity,
            invite.callsid,
            gateway,
        )
        attach = envelope.Attach(
            link=link,
            sender=self.gateway_id,
            callsid=invite.callsid,
            token=invite.reconnect or "",
            account_sid=conn.account_sid,
            identity=conn.identity,
            hold_s=float(conn.reconnect_timeout_s),
        )
        self._publish(gateway, attach)

    def relay_frame(self, conn: CallClient, message: Message) -> bool:
        """Router hook: pass a relayed client's frame to the gateway holding its leg."""
        callsid = getattr(message, "callsid", None)
        link = self._relay_routes.get((conn.id, callsid)) if isinstance(callsid, str) else None
        entry = self.relaying.get(link) if link is not None else None
        if link is None or entry is None:
            return False
        self._publish(
            entry[1], envelope.Relay(link=link, sender=self.gateway_id, frame=encode(message))
        )
        return True

    def client_gone(self, conn: CallClient) -> None:
        """Router hook: ``conn``'s socket closed; the gateways it was relayed to hear so."""
        for route, link in list(self._relay_routes.items()):
            if route[0] != conn.id:
                continue
            del self._relay_routes[route]
            entry = self.relaying.pop(link, None)
            if entry is not None:
                self._publish(entry[1], envelope.Relay(link=link, sender=self.gateway_id))

    async def _on_attach(self, attach: envelope.Attach) -> None:
        """A client of ``attach.sender`` reconnected there for a leg of ours."""
        client = RelayedClient(
            link=attach.link,
            own_gateway=self.gateway_id,
            peer_gateway=attach.sender,
            account_sid=attach.account_sid,
            identity=attach.identity,
            publish=self._publish,
            reconnect_timeout_s=attach.hold_s,
        )
        self.relayed[attach.link] = client
        reconnect = Invite(callsid=attach.callsid, sdp="", reconnect=attach.token)
        await self.router.on_message(client, reconnect)

    async def _on_relay(self, relay: envelope.Relay) -> None:
        """A relayed frame: from a client of another gateway, or for a client here."""
        relayed = self.relayed.get(relay.link)
        if relayed is not None:
            if relay.frame is None:  # its socket there closed
                relayed.closed = True
                del self.relayed[relay.link]
                await self.router.on_connection_closed(relayed)
                return
            message = self._decode(relay.frame, C2S)
            if message is not None:
                await self.router.on_message(relayed, message)
            return
        entry = self.relaying.get(relay.link)
        if entry is None or relay.frame is None:
            return
        message = self._decode(relay.frame, S2C)
        if message is None:
            return
        entry[0].send(message)
        if isinstance(message, Hangup | Cancel):  # that call is over: stop relaying it
            self.relaying.pop(relay.link, None)
            if message.callsid is not None:
                self._relay_routes.pop((entry[0].id, message.callsid), None)

    @staticmethod
    def _decode(frame: str, direction: Any) -> Message | None:
        try:
            message = decode(frame, direction)
        except MalformedMessage as exc:
            log.warning("cluster: dropping a relayed frame that does not parse: %s", exc)
            return None
        return None if isinstance(message, Heartbeat) else message

    async def _is_gone(self, gateway: str) -> bool:
        if gateway in self.gone:
            return True
        try:
            ((_, count),) = await asyncio.wait_for(
                self._redis.pubsub_numsub(directory.channel(gateway)), COMMAND_TIMEOUT_S
            )
        except _FAILURES:
            return False
        return int(count) == 0

    async def _check_peers(self) -> None:
        """Find the far gateways of live links that nobody listens for any more."""
        peers = {
            client.peer_gateway
            for client, _ in self.links.values()
            if client.callsid is not None and not client.closed
        }
        for peer in set(self._absent_since) - peers:
            del self._absent_since[peer]
        if not peers:
            return
        ordered = sorted(peers)
        counts = await self._redis.pubsub_numsub(*(directory.channel(p) for p in ordered))
        now = time.monotonic()
        for peer, (_, count) in zip(ordered, counts, strict=True):
            if int(count) > 0:
                self._absent_since.pop(peer, None)
                self.gone.discard(peer)
                continue
            since = self._absent_since.setdefault(peer, now)
            if now - since >= PEER_GONE_S and peer not in self.gone:
                self.gone.add(peer)
                await self._peer_gone(peer)

    async def _peer_gone(self, peer: str) -> None:
        """``peer`` died: its links' calls wait for their clients' reconnect windows."""
        links = [
            client
            for client, _ in list(self.links.values())
            if client.peer_gateway == peer and not client.closed and client.callsid is not None
        ]
        log.warning(
            "cluster: gateway %s is gone (nobody on its channel for %g s): %d call(s) with "
            "a leg there wait for their clients to reconnect here",
            peer,
            PEER_GONE_S,
            len(links),
        )
        for client in links:
            client.reconnect_timeout_s = await self._hold_of(client.link, peer)
            await self.router.on_connection_closed(client)

    async def _hold_of(self, link: str, gateway: str) -> float:
        """The reconnect window of the client whose leg ``gateway`` held on ``link``."""
        try:
            raw = await self._redis.get(directory.link_key(link, gateway))
            record = json.loads(raw) if raw is not None else {}
        except (*_FAILURES, ValueError):
            return 0.0
        hold = record.get("hold_s", 0) if isinstance(record, dict) else 0
        return float(hold) if isinstance(hold, int | float) else 0.0

    def _sweep_links(self) -> None:
        """Forget links that ended or that no call uses any more."""
        in_use = {
            id(leg.conn) for call in self.router.calls for leg in [call.caller, *call.callees]
        }
        cutoff = time.monotonic() - LINK_GRACE_S
        for link, (client, made) in list(self.links.items()):
            if client.closed or (id(client) not in in_use and made < cutoff):
                del self.links[link]
        for link, relayed in list(self.relayed.items()):
            if relayed.closed or id(relayed) not in in_use:
                del self.relayed[link]


def new_gateway_id(edge: str) -> str:
    """A cluster-unique id for a gateway process of ``edge``."""
    return f"{edge}-{secrets.token_hex(4)}"
