"""The built-in WebRTC plugin: our aiortc ``PeerConnection`` in this process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from softphone.media.peer_connection import DEFAULT_CODEC_PREFERENCES, PeerConnection
from softphone.plugins.markers import hookimpl

__all__ = ["AiortcPeerConnections"]


class AiortcPeerConnections:
    """Answers ``softphone_create_peer_connection`` last, so any plugin can replace it.

    ICE servers come only from ``configuration["iceServers"]`` (default none),
    never aiortc's public STUN default; codec order and the Opus bitrate cap
    come from the Device options.
    """

    @hookimpl(trylast=True)
    def softphone_create_peer_connection(
        self, configuration: Mapping[str, Any], options: Any
    ) -> PeerConnection:
        """A new aiortc peer connection."""
        return PeerConnection(
            ice_servers=list(configuration.get("iceServers") or []),
            codec_preferences=getattr(options, "codec_preferences", DEFAULT_CODEC_PREFERENCES),
            max_average_bitrate=getattr(options, "max_average_bitrate", None),
        )
