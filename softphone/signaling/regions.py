"""Edges, regions and signaling URLs, as the JS SDK derives them.

Which WebSocket URLs a Device tries, in which order, and which edge it
believes it is on after ``connected`` decide where reconnects go
(transport-and-edges.md §1, §2). The JS SDK's tables and rules
(``lib/twilio/regions.ts``, ``Device._onSignalingConnected``) are reproduced
here as pure functions so the Python Device and the gateway agree with
browsers. One deliberate extension: a host may carry its own ``ws://`` or
``wss://`` scheme (plain ``ws://`` for tests) and a path prefix.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from softphone.signaling.params import js_string, js_truthy

__all__ = [
    "DEFAULT_EDGE",
    "DEFAULT_EVENT_GATEWAY",
    "INTERCONNECT_EDGES",
    "PUBLIC_EDGES",
    "REGION_SHORTCODES",
    "REGION_TO_EDGE",
    "Edge",
    "Region",
    "chunder_host",
    "edge_from_connected",
    "insights_host",
    "preferred_signaling_url",
    "region_code_from_long_name",
    "signaling_hosts",
    "signaling_url",
    "signaling_urls",
]


class Edge(enum.StrEnum):
    """Edge location names accepted by the ``edge`` Device option (enum ``Edge``)."""

    SYDNEY = "sydney"
    SAO_PAULO = "sao-paulo"
    DUBLIN = "dublin"
    FRANKFURT = "frankfurt"
    TOKYO = "tokyo"
    SINGAPORE = "singapore"
    ASHBURN = "ashburn"
    UMATILLA = "umatilla"
    ROAMING = "roaming"
    ASHBURN_IX = "ashburn-ix"
    SAN_JOSE_IX = "san-jose-ix"
    LONDON_IX = "london-ix"
    FRANKFURT_IX = "frankfurt-ix"
    SINGAPORE_IX = "singapore-ix"
    SYDNEY_IX = "sydney-ix"
    TOKYO_IX = "tokyo-ix"


PUBLIC_EDGES: Final = (
    Edge.SYDNEY,
    Edge.SAO_PAULO,
    Edge.DUBLIN,
    Edge.FRANKFURT,
    Edge.TOKYO,
    Edge.SINGAPORE,
    Edge.ASHBURN,
    Edge.UMATILLA,
    Edge.ROAMING,
)
"""The public edges, in the JS enum's order."""

INTERCONNECT_EDGES: Final = (
    Edge.ASHBURN_IX,
    Edge.SAN_JOSE_IX,
    Edge.LONDON_IX,
    Edge.FRANKFURT_IX,
    Edge.SINGAPORE_IX,
    Edge.SYDNEY_IX,
    Edge.TOKYO_IX,
)
"""The Interconnect edges, in the JS enum's order."""


class Region(enum.StrEnum):
    """Twilio region codes (JS enum ``Region``: deprecated, still used for mapping)."""

    AU1 = "au1"
    AU1_IX = "au1-ix"
    BR1 = "br1"
    DE1 = "de1"
    DE1_IX = "de1-ix"
    GLL = "gll"
    IE1 = "ie1"
    IE1_IX = "ie1-ix"
    IE1_TNX = "ie1-tnx"
    JP1 = "jp1"
    JP1_IX = "jp1-ix"
    SG1 = "sg1"
    SG1_IX = "sg1-ix"
    SG1_TNX = "sg1-tnx"
    US1 = "us1"
    US1_IX = "us1-ix"
    US1_TNX = "us1-tnx"
    US2 = "us2"
    US2_IX = "us2-ix"
    US2_TNX = "us2-tnx"


REGION_SHORTCODES: Final[Mapping[str, Region]] = MappingProxyType(
    {
        "ASIAPAC_SINGAPORE": Region.SG1,
        "ASIAPAC_SYDNEY": Region.AU1,
        "ASIAPAC_TOKYO": Region.JP1,
        "EU_FRANKFURT": Region.DE1,
        "EU_IRELAND": Region.IE1,
        "SOUTH_AMERICA_SAO_PAULO": Region.BR1,
        "US_EAST_VIRGINIA": Region.US1,
        "US_WEST_OREGON": Region.US2,
    }
)
"""Long region names a server reports in ``connected.region`` → region code (§2.3)."""

REGION_TO_EDGE: Final[Mapping[Region, Edge]] = MappingProxyType(
    {
        Region.AU1: Edge.SYDNEY,
        Region.BR1: Edge.SAO_PAULO,
        Region.IE1: Edge.DUBLIN,
        Region.DE1: Edge.FRANKFURT,
        Region.JP1: Edge.TOKYO,
        Region.SG1: Edge.SINGAPORE,
        Region.US1: Edge.ASHBURN,
        Region.US2: Edge.UMATILLA,
        Region.GLL: Edge.ROAMING,
        Region.US1_IX: Edge.ASHBURN_IX,
        Region.US2_IX: Edge.SAN_JOSE_IX,
        Region.IE1_IX: Edge.LONDON_IX,
        Region.DE1_IX: Edge.FRANKFURT_IX,
        Region.SG1_IX: Edge.SINGAPORE_IX,
        Region.AU1_IX: Edge.SYDNEY_IX,
        Region.JP1_IX: Edge.TOKYO_IX,
        Region.US1_TNX: Edge.ASHBURN_IX,
        Region.US2_TNX: Edge.ASHBURN_IX,
        Region.IE1_TNX: Edge.LONDON_IX,
        Region.SG1_TNX: Edge.SINGAPORE_IX,
    }
)
"""Region code → edge (§2.4); every one of the 20 codes maps."""

DEFAULT_EDGE: Final = Edge.ROAMING
"""The edge used when the Device is given none."""

DEFAULT_EVENT_GATEWAY: Final = "eventgw.twilio.com"
"""Insights host used before ``connected`` and when ``home`` is empty."""

_SCHEMES: Final = ("ws://", "wss://")


def chunder_host(edge: str) -> str:
    """The signaling host of an edge: ``voice-js.<edge>.twilio.com`` (any string accepted)."""
    return f"voice-js.{edge}.twilio.com"


def _edge_hosts(edge: object) -> list[str]:
    """``getChunderURIs``: hosts for the ``edge`` option; :class:`ValueError` on a bad type."""
    if not js_truthy(edge):
        return [chunder_host(DEFAULT_EDGE)]
    if isinstance(edge, str):
        return [chunder_host(edge)]
    if isinstance(edge, list | tuple) and all(isinstance(e, str) for e in edge):
        return [chunder_host(e) for e in edge]
    raise ValueError("If `edge` is provided, it must be of type `string` or an array of strings.")


def signaling_hosts(
    edge: str | Sequence[str] | None = None,
    chunderw: str | Sequence[str] | None = None,
) -> list[str]:
    """The signaling host list for the Device options ``edge`` and ``chunderw``.

    ``chunderw`` (a host string or a list of them) completely overrides
    ``edge``; values of any other type are ignored, as in JS. Otherwise each
    edge becomes ``voice-js.<edge>.twilio.com`` (unknown names accepted
    as-is); no edge (or a JS-falsy one such as ``""``) gives roaming. A
    JS-truthy edge that is neither a string nor a list/tuple of strings raises
    :class:`ValueError` (JS ``InvalidArgumentError``).
    """
    if isinstance(chunderw, str):
        return [chunderw]
    if isinstance(chunderw, list | tuple):
        if not all(isinstance(host, str) for host in chunderw):
            raise ValueError("`chunderw` must be a string or an array of strings.")
        return list(chunderw)
    return _edge_hosts(edge)


def signaling_url(host: str, scheme: str = "wss") -> str:
    """One signaling URL: ``<scheme>://<host>/signal``.

    A host that already starts with ``ws://`` or ``wss://`` keeps its own
    scheme (our extension; JS always adds ``wss://``). The host may carry a
    path prefix (``127.0.0.1:8443/incoming`` →
    ``wss://127.0.0.1:8443/incoming/signal``); trailing slashes are dropped
    so the path never contains ``//signal``.
    """
    base = host.rstrip("/")
    if not base.lower().startswith(_SCHEMES):
        base = f"{scheme}://{base}"
    return f"{base}/signal"


def signaling_urls(hosts: Iterable[str], scheme: str = "wss") -> list[str]:
    """:func:`signaling_url` for each host, in order (a lone string counts as one host)."""
    if isinstance(hosts, str):
        hosts = [hosts]
    return [signaling_url(host, scheme) for host in hosts]


def region_code_from_long_name(name: object) -> str | None:
    """Region code for a long region name (``US_EAST_VIRGINIA`` → ``us1``), else ``None``."""
    if not isinstance(name, str):
        return None
    code = REGION_SHORTCODES.get(name)
    return None if code is None else code.value


def edge_from_connected(payload_edge: object, payload_region: object) -> str | None:
    """``device.edge`` after a ``connected`` payload (§2.5).

    The payload's ``edge`` if it is a non-empty string (a list → its first
    element); else the edge of the region code mapped from the long
    ``region`` name; else the raw ``region`` string as-is (so a short code
    like ``us1`` yields ``"us1"``); else ``None``. Non-string edges are
    ignored rather than stored.
    """
    edge = payload_edge
    if isinstance(edge, list | tuple):
        edge = edge[0] if edge else None
    if isinstance(edge, str) and edge:
        return edge
    code = region_code_from_long_name(payload_region)
    if code is not None:
        return REGION_TO_EDGE[Region(code)].value
    return payload_region if isinstance(payload_region, str) else None


def insights_host(home: object) -> str:
    """Insights host for ``connected.home``: ``eventgw.<home>.twilio.com``, or the default.

    Any JS-falsy ``home`` (``None``, ``""``, ``0``) gives ``eventgw.twilio.com``.
    """
    if not js_truthy(home):
        return DEFAULT_EVENT_GATEWAY
    return f"eventgw.{js_string(home)}.twilio.com"


def preferred_signaling_url(
    chunderw: str | Sequence[str] | None,
    device_edge: str | Sequence[str] | None,
    scheme: str = "wss",
) -> str | None:
    """The preferred signaling URI computed at ``connected`` (§2.5).

    The first host of ``chunderw`` if set, else of ``device.edge`` (a list →
    its first element; nothing usable → roaming), as a signaling URL.
    ``None`` when the host list is empty (e.g. ``chunderw=[]``): the JS SDK
    then only logs a warning and keeps no preferred URI.
    """
    hosts = signaling_hosts(edge=device_edge, chunderw=chunderw)
    return signaling_url(hosts[0], scheme) if hosts else None
