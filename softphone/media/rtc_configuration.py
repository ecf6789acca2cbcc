"""The JS ``rtcConfiguration`` dictionary, validated, and the ICE servers it names.

A Device's ``rtc_configuration`` (and the one given to ``connect``/``accept``)
is the browser's ``RTCConfiguration``: ``iceServers`` (``{"urls", "username",
"credential"}`` dicts) and ``iceTransportPolicy`` (``"all"`` or ``"relay"``).
:func:`parse_rtc_configuration` checks it the way a browser's
``RTCPeerConnection`` constructor does and turns it into what our ICE agent
needs: the STUN server and every TURN server, each with its transport
(``turn:…?transport=udp``, ``turn:…?transport=tcp``, ``turns:`` = TURN over
TLS). Pure: no I/O, raises ``ValueError`` with a message naming the bad value.

Unknown keys (``bundlePolicy``, ``rtcpMuxPolicy``, ``sdpSemantics``…) are
accepted and ignored, as browsers ignore dictionary members they do not use.
Server URLs that are well formed but that no browser or aioice can use
(``stuns:``, ``turns:…?transport=udp``) are skipped, not fatal: ICE server
lists from TURN providers often carry them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ICE_TRANSPORT_POLICIES",
    "IceTransportPolicy",
    "RelayProtocol",
    "RtcConfiguration",
    "TurnServer",
    "parse_rtc_configuration",
    "parse_server_url",
]

IceTransportPolicy = Literal["all", "relay"]
RelayProtocol = Literal["udp", "tcp", "tls"]
ICE_TRANSPORT_POLICIES: Final[tuple[IceTransportPolicy, ...]] = ("all", "relay")
_SCHEMES: Final = ("stun", "stuns", "turn", "turns")
_DEFAULT_PORTS: Final = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}
_URL = re.compile(
    r"(?P<scheme>[a-z]+):"
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^?:\[\]/@\s]+))"
    r"(?::(?P<port>[0-9]+))?"
    r"(?:\?transport=(?P<transport>[A-Za-z]+))?"
)


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """One parsed ``stun:``/``stuns:``/``turn:``/``turns:`` URL (RFC 7064, RFC 7065)."""

    url: str
    scheme: Literal["stun", "stuns", "turn", "turns"]
    host: str
    port: int
    transport: Literal["udp", "tcp"] | None
    """Explicit ``?transport=``; None for STUN and when the TURN URL has none."""


@dataclass(frozen=True, slots=True)
class TurnServer:
    """A TURN server our ICE agent allocates a relay on, with its credentials."""

    url: str
    host: str
    port: int
    transport: Literal["udp", "tcp"]
    """How we reach the server (the relayed media itself is always UDP)."""
    tls: bool
    username: str
    credential: str

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""
        return (self.host, self.port)

    @property
    def relay_protocol(self) -> RelayProtocol:
        """WebRTC's ``relayProtocol`` of candidates from this server: udp, tcp or tls."""
        return "tls" if self.tls else self.transport


@dataclass(frozen=True, slots=True)
class RtcConfiguration:
    """A validated ``rtcConfiguration``: the ICE policy and servers our ICE agent uses."""

    ice_transport_policy: IceTransportPolicy = "all"
    stun_servers: tuple[ServerUrl, ...] = ()
    turn_servers: tuple[TurnServer, ...] = ()
    skipped_urls: tuple[str, ...] = ()
    """Well-formed URLs no ICE agent here can use (``stuns:``, TURN over DTLS)."""

    @property
    def relay_only(self) -> bool:
        """True for ``iceTransportPolicy: "relay"``: only TURN relay candidates are used."""
        return self.ice_transport_policy == "relay"

    @property
    def stun_server(self) -> tuple[str, int] | None:
        """The STUN server aioice queries (it uses one): the first ``stun:`` URL."""
        first = next(iter(self.stun_servers), None)
        return (first.host, first.port) if first is not None else None


def parse_server_url(url: str) -> ServerUrl:
    """Parse one ICE server URL; ``ValueError`` when it is not a STUN or TURN URL.

    Defaults as in RFC 7064/7065: port 3478 (5349 for ``stuns``/``turns``);
    ``?transport=`` is allowed on TURN URLs only and must be ``udp`` or ``tcp``.
    """
    if not isinstance(url, str):
        raise ValueError(f"ICE server URL must be a string, got {url!r}")
    match = _URL.fullmatch(url.strip())
    if match is None:
        raise ValueError(f"malformed ICE server URL {url!r}")
    scheme = match["scheme"].lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"ICE server URL {url!r}: scheme must be one of {', '.join(_SCHEMES)}")
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ValueError(f"ICE server URL {url!r}: port {port} is out of range")
    transport = match["transport"].lower() if match["transport"] else None
    if transport is not None:
        if scheme.startswith("stun"):
            raise ValueError(f"ICE server URL {url!r}: a STUN URL takes no ?transport=")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"ICE server URL {url!r}: transport must be udp or tcp")
    return ServerUrl(
        url=url,
        scheme=scheme,  # type: ignore[arg-type]
        host=match["ipv6"] or match["host"],
        port=port,
        transport=transport,  # type: ignore[arg-type]
    )


def parse_rtc_configuration(configuration: Mapping[str, Any] | None) -> RtcConfiguration:
    """Validate a JS-style ``rtcConfiguration``; ``ValueError`` names what is wrong.

    Checked like a browser's ``RTCPeerConnection`` constructor: ``iceServers``
    is a list of dicts with ``urls`` (a string or a list of strings; the
    legacy ``url`` is accepted), TURN URLs need ``username`` and
    ``credential``, and ``iceTransportPolicy`` is ``"all"`` or ``"relay"``.
    None means the SDK default: no ICE servers, policy ``"all"``.
    """
    if configuration is None:
        return RtcConfiguration()
    if not isinstance(configuration, Mapping):
        raise ValueError(f"rtcConfiguration must be a dict, got {type(configuration).__name__}")
    policy = configuration.get("iceTransportPolicy", "all")
    if policy is None:
        policy = "all"
    if policy not in ICE_TRANSPORT_POLICIES:
        raise ValueError(
            f"rtcConfiguration.iceTransportPolicy must be 'all' or 'relay', got {policy!r}"
        )
    stun: list[ServerUrl] = []
    turn: list[TurnServer] = []
    skipped: list[str] = []
    for server in _ice_servers(configuration.get("iceServers")):
        for url in _server_urls(server):
            parsed = parse_server_url(url)
            if parsed.scheme == "stun":
                stun.append(parsed)
            elif parsed.scheme == "stuns" or (
                parsed.scheme == "turns" and parsed.transport == "udp"
            ):
                skipped.append(url)
            else:
                turn.append(_turn_server(parsed, server))
    return RtcConfiguration(
        ice_transport_policy=policy,
        stun_servers=tuple(stun),
        turn_servers=tuple(turn),
        skipped_urls=tuple(skipped),
    )


def _ice_servers(value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"rtcConfiguration.iceServers must be a list, got {value!r}")
    for server in value:
        if not isinstance(server, Mapping):
            raise ValueError(f"each ICE server must be a dict, got {server!r}")
    return list(value)


def _server_urls(server: Mapping[str, Any]) -> list[str]:
    urls = server.get("urls", server.get("url"))
    if isinstance(urls, str):
        urls = [urls]
    if not urls or not isinstance(urls, Sequence) or not all(isinstance(u, str) for u in urls):
        raise ValueError(f"ICE server needs urls (a string or a list of strings): {server!r}")
    return list(urls)


def _turn_server(url: ServerUrl, server: Mapping[str, Any]) -> TurnServer:
    username, credential = server.get("username"), server.get("credential")
    if not isinstance(username, str) or not isinstance(credential, str):
        raise ValueError(f"TURN server {url.url!r} needs a string username and credential")
    credential_type = server.get("credentialType", "password")
    if credential_type != "password":
        raise ValueError(f"TURN server {url.url!r}: only credentialType 'password' is supported")
    tls = url.scheme == "turns"
    return TurnServer(
        url=url.url,
        host=url.host,
        port=url.port,
        transport=url.transport or ("tcp" if tls else "udp"),
        tls=tls,
        username=username,
        credential=credential,
    )
