"""Where the cluster keeps its shared state in Redis: names and expiry rules (pure).

Presence: one sorted set per (account, identity), ``softphone:presence:<account>:<identity>``,
whose members are the ids of the gateways where that identity has a registered
device, each scored with the time (Unix seconds) its entry stops counting. A gateway
refreshes its entries every ``ttl / 3``; a gateway that dies or loses Redis simply
stops refreshing, and its entries stop counting ``ttl`` later (the key itself expires
too, so nothing is left behind). Each gateway listens on its own pub/sub channel
``softphone:gw:<id>`` and announces itself (edge, region) in ``softphone:gateway:<id>``.
"""

from __future__ import annotations

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
