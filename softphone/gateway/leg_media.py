"""How the gateway's own media legs reach clients: bind address, advertised address,
RTP port range and, behind NAT, TURN.

A gateway on a cloud VM binds a private address but is reached at a public one (1:1
NAT): its SDP must carry the public address (``advertised_address``) while its sockets
bind the private one (``bind_address``). Firewall rules want the RTP ports in a known
range (``port_range``). A gateway that is itself behind a NAT it cannot map can also
gather relay candidates on the TURN servers of the Network Traversal Service
(``relay``), with credentials minted from the same shared secret.

:class:`LegMedia` is the leg-media factory the call router is given: one new
:class:`~softphone.media.peer_connection.PeerConnection` per leg.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

import attrs

from softphone.gateway.traversal import DEFAULT_TTL_S, TraversalConfig, ice_servers, turn_credential
from softphone.media.aiortc_hooks import use_host_addresses, use_port_range
from softphone.media.peer_connection import PeerConnection

GATEWAY_TURN_USER = "softphone-gateway"
"""The user part of the TURN credentials the gateway mints for its own legs."""
CODECS = ("opus", "pcmu")


def _check_address(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{attribute.name} must be an IP address, got {value!r}") from None
    if attribute.name == "advertised_address" and address.is_unspecified:
        raise ValueError(f"cannot advertise the unspecified address {value}")


def _check_range(_: Any, __: attrs.Attribute[Any], value: tuple[int, int] | None) -> None:
    if value is None:
        return
    low, high = value
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"RTP port range must be within 1024-65535 and low <= high, got {value}")


@attrs.frozen(kw_only=True)
class LegMediaConfig:
    """Where the gateway's media sockets live and what it tells clients about them."""

    bind_address: str = attrs.field(default="127.0.0.1", validator=_check_address)
    """The local address media sockets bind (host candidates are gathered there)."""
    advertised_address: str | None = attrs.field(default=None, validator=_check_address)
    """The address put in SDP instead of ``bind_address`` (1:1 NAT); None: the same."""
    port_range: tuple[int, int] | None = attrs.field(default=None, validator=_check_range)
    """Inclusive UDP port range for media sockets; None: any free port."""
    relay: bool = False
    """Also gather relay candidates on the traversal service's TURN servers."""


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10000-20000"`` -> ``(10000, 20000)``; ValueError with the expected form."""
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        value = (int(low), int(high))
    except ValueError:
        raise ValueError(f"port range must look like 10000-20000, got {text!r}") from None
    _check_range(None, None, value)  # type: ignore[arg-type]
    return value


class LegMedia:
    """Makes the peer connection of every gateway leg from one :class:`LegMediaConfig`."""

    def __init__(
        self,
        config: LegMediaConfig | None = None,
        traversal: TraversalConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or LegMediaConfig()
        self.traversal = traversal or TraversalConfig()
        if self.config.relay and not self.traversal.turn_urls:
            raise ValueError("relay for gateway legs needs TURN servers (--turn and --turn-secret)")
        self._clock = clock

    def apply_process_hooks(self) -> None:
        """Bind media on ``bind_address`` within ``port_range`` for this whole process.

        aioice picks its host addresses and ports process-wide, so a gateway process
        (the CLI) calls this once; in-process tests set the same hooks through fixtures.
        """
        if self.config.bind_address not in ("0.0.0.0", "::"):
            use_host_addresses([self.config.bind_address])
        use_port_range(self.config.port_range)

    def ice_servers(self) -> list[dict[str, str]]:
        """TURN servers with fresh credentials when ``relay`` is on, else none."""
        if not self.config.relay:
            return []
        credential = turn_credential(
            self.traversal.shared_secret,
            GATEWAY_TURN_USER,
            ttl_s=DEFAULT_TTL_S,
            now=self._clock(),
        )
        return [
            server for server in ice_servers(self.traversal, credential) if "username" in server
        ]

    def __call__(self) -> PeerConnection:
        """A new peer connection for one leg."""
        return PeerConnection(
            ice_servers=self.ice_servers(),
            codec_preferences=CODECS,
            advertised_address=self.config.advertised_address,
        )
