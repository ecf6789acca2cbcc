"""What our ICE agent gathers, how long it waits, and when gathering failed. Pure.

aiortc waits for complete gathering before it returns an SDP (no trickle ICE
on this signaling protocol), and aioice waits up to 5 s for STUN and TURN
answers, so an unreachable TURN server used to hold every offer and answer
for 5 s. :data:`ICE_GATHERING_TIMEOUT_S` bounds that wait: the SDP carries
what was gathered by then, like a browser's offer that carries whatever
candidates exist when it is read (the JS SDK never waits).

Gathering *fails*, as the JS SDK's ``IceGatheringFailed`` media failure, when
it produced no candidate at all: reason ``"timeout"`` when the time bound cut
some TURN server off, ``"none"`` when every server answered (or none was
configured) and still nothing usable came out (``Call.IceGatheringFailureReason``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Final, Literal

from softphone.media.rtc_configuration import RelayProtocol, TurnServer

__all__ = [
    "ICE_GATHERING_TIMEOUT_S",
    "GatheringFailure",
    "GatheringReport",
    "IceGatheringSettings",
    "relay_local_preference",
]

ICE_GATHERING_TIMEOUT_S: Final = 2.0
"""Longest wait for STUN/TURN candidates before an offer or answer is sent.

Enough for a TURN allocation over TLS at a few hundred ms of round-trip time
(TCP and TLS handshakes, the 401 challenge and the authenticated Allocate)
or for one lost UDP Allocate (aioice retransmits after 0.5 s); a TURN server
that has not answered by then is left out of the SDP, instead of delaying the
call setup by aioice's 5 s."""

GatheringFailure = Literal["none", "timeout"]

_RELAY_PREFERENCE: Final[dict[RelayProtocol, int]] = {"udp": 2, "tcp": 1, "tls": 0}


def relay_local_preference(protocol: RelayProtocol, index: int = 0) -> int:
    """RFC 8445 local preference (0..65535) of a relay candidate: UDP > TCP > TLS.

    Browsers rank TURN/UDP relays above TURN/TCP above TURN/TLS (the extra
    hop costs latency and TCP suffers head-of-line blocking); ``index`` keeps
    several servers of one protocol apart, the first listed ranking highest.
    """
    return (_RELAY_PREFERENCE[protocol] << 14) + max(0, (1 << 14) - 1 - index)


@dataclass(frozen=True, slots=True)
class IceGatheringSettings:
    """How one peer connection gathers: policy, servers and the time bound."""

    relay_only: bool = False
    """``iceTransportPolicy: "relay"``: no host or server-reflexive candidates."""
    stun_server: tuple[str, int] | None = None
    turn_servers: tuple[TurnServer, ...] = ()
    """Every TURN server is used (aioice alone uses only the first one)."""
    timeout: float | None = ICE_GATHERING_TIMEOUT_S
    """Seconds to wait for STUN/TURN answers; None keeps aioice's own 5 s."""
    tls_context: ssl.SSLContext | None = None
    """Verifies ``turns:`` servers; None: the system trust store (``SSL_CERT_FILE``)."""


@dataclass(slots=True)
class GatheringReport:
    """What one gathering produced (aioice reports nothing of the kind)."""

    candidate_types: list[str] = field(default_factory=list)
    """Type of each gathered candidate: host, srflx, relay."""
    relays: dict[str, RelayProtocol] = field(default_factory=dict)
    """TURN URL → relay protocol, for each server that gave a relay candidate."""
    timed_out: list[str] = field(default_factory=list)
    """TURN URLs that had not answered when the time bound ran out."""
    failed: dict[str, str] = field(default_factory=dict)
    """TURN URL → why the allocation failed (refused, unreachable, 401…)."""
    seconds: float = 0.0
    """How long gathering took."""
    done: bool = False

    @property
    def failure(self) -> GatheringFailure | None:
        """``"none"``/``"timeout"`` when gathering ended with no candidate, else None."""
        if not self.done or self.candidate_types:
            return None
        return "timeout" if self.timed_out else "none"
