"""Where the cluster keeps its shared state in Redis: names and expiry rules (pure).

Presence: one sorted set per (account, identity), ``softphone:presence:<account>:<identity>``,
whose members are the ids of the gateways where that identity has a registered
device, each scored with the time (Unix seconds) its entry stops counting. A gateway
refreshes its entries every ``ttl / 3``; a gateway that dies or loses Redis simply
stops refreshing, and its entries stop counting ``ttl`` later (the key itself expires
too, so nothing is left behind). Each gateway listens on its own pub/sub channel
``softphone:gw:<id>`` and announces itself (edge, region) in ``softphone:gateway:<id>``.

Legs of cross-gateway calls: when a client is told a reconnect token for its leg of
a call whose other side is on another gateway, its gateway records the leg under
``softphone:leg:<CallSid>`` and ``softphone:link:<link>:<gateway>`` (who, a hash of the
token, the link, the far gateway, the client's reconnect window). If that gateway
dies, the far gateway holds the call for the window and lets the client take the leg
over there; the records go when the call ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

PREFIX = "softphone"
DEFAULT_TTL_S = 30.0
"""How long a presence entry counts without a refresh."""


def presence_key(account_sid: str, identity: str) -> str:
    """The sorted set of gateways where ``identity`` of ``account_sid`` is registered."""
    return f"{PREFIX}:presence:{account_sid}:{identity}"


def channel(gateway_id: str) -> str:
    """The pub/sub channel a gateway reads its cluster frames from."""
    return f"{PREFIX}:gw:{gateway_id}"


def gateway_key(gateway_id: str) -> str:
    """Where a gateway announces its edge and region (expires like presence)."""
    return f"{PREFIX}:gateway:{gateway_id}"


def leg_key(callsid: str) -> str:
    """The record of a client's leg of a cross-gateway call, by the CallSid it knows."""
    return f"{PREFIX}:leg:{callsid}"


def link_key(link: str, gateway_id: str) -> str:
    """The same record by the link and the gateway that holds the leg."""
    return f"{PREFIX}:link:{link}:{gateway_id}"


def token_digest(token: str) -> str:
    """What a leg record keeps of a reconnect token (the token itself never leaves)."""
    return hashlib.sha256(token.encode()).hexdigest()


def live_gateways(entries: Iterable[tuple[str | bytes, float]], now: float, own: str) -> list[str]:
    """Gateway ids of ``entries`` (member, expiry) still valid at ``now``, other than ``own``.

    Sorted for a stable ring order.
    """
    found = set()
    for member, expires in entries:
        gateway = member.decode() if isinstance(member, bytes) else member
        if expires > now and gateway != own:
            found.add(gateway)
    return sorted(found)


def refresh_interval(ttl_s: float) -> float:
    """How often a gateway re-publishes its presence entries."""
    return ttl_s / 3
