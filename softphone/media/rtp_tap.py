"""What an RTP tap sees: one received packet as plain data.

The receive shim in :mod:`softphone.media.aiortc_hooks` (the only module that reaches
into aiortc internals) builds these from aiortc's packets after SRTP is removed; the
peer connection's receive path and the gateway's media bridge consume them without
touching aiortc at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["RtpTap", "RtpTapPacket"]


class RtpTapPacket(NamedTuple):
    """An incoming RTP packet (SRTP removed) as a tap sees it.

    A named tuple: immutable, and made for every packet of every leg, twice as
    cheap to build as a frozen dataclass.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    ssrc: int
    payload: bytes
    arrival_time_ms: int


RtpTap = Callable[[RtpTapPacket], None]
"""A function fed every received packet, in arrival order."""
