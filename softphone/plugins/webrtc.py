"""The built-in WebRTC plugin: our aiortc ``PeerConnection`` in this process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from softphone.media.peer_connection import DEFAULT_CODEC_PREFERENCES, PeerConnection
from softphone.media.rtc_configuration import parse_rtc_configuration
from softphone.plugins.markers import hookimpl

__all__ = ["AiortcPeerConnections"]


class AiortcPeerConnections:
    """Answers ``softphone_create_peer_connection`` last, so any plugin can replace it.

    The configuration is the JS ``rtcConfiguration``, checked as a browser
    checks it (``ValueError`` for an unknown ``iceTransportPolicy``, a
    malformed server URL, a TURN server without credentials): ICE servers come
    only from ``iceServers`` (default none), never aiortc's public STUN
    default, and ``iceTransportPolicy: "relay"`` is honoured; codec order,
    the Opus bitrate cap and the TLS context (``ssl_context``, which also
    verifies ``turns:`` servers) come from the Device options.
    """

    @hookimpl(trylast=True)
    def softphone_create_peer_connection(
        self, configuration: Mapping[str, Any], options: Any
    ) -> PeerConnection:
        """A new aiortc peer connection."""
        parse_rtc_configuration(configuration)  # the whole dict, not only what we pass on
        return PeerConnection(
            ice_servers=configuration.get("iceServers"),
            ice_transport_policy=configuration.get("iceTransportPolicy") or "all",
            codec_preferences=getattr(options, "codec_preferences", DEFAULT_CODEC_PREFERENCES),
            max_average_bitrate=getattr(options, "max_average_bitrate", None),
            turn_tls_context=getattr(options, "ssl_context", None),
        )
