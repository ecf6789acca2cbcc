"""aiortc's own media path, measured in the same run as ours for comparison.

* Devices: ``PeerConnection(receive_path="aiortc")``: aiortc's fixed 80 ms
  jitter buffer and decoder thread, no concealment.
* Gateway: every leg decodes through aiortc's receive path into a PCM pipe and
  the other leg re-encodes from it (what the router did before
  :mod:`softphone.gateway.media_bridge`): two jitter buffers and two codecs in
  series.

:func:`install_gateway_baseline` patches the gateway process it runs in;
nothing here is used outside the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from softphone.audio_backends.pipe import PcmPipe
from softphone.gateway import media_bridge
from softphone.media.peer_connection import PeerConnection


class PcmBridge:
    """Decode/re-encode bridging through PCM pipes (the baseline's ``Bridge``)."""

    mode = "pcm"

    def __init__(self, pairs: list[tuple[PeerConnection, PeerConnection]]) -> None:
        self._pipes: list[PcmPipe] = []
        for source, target in pairs:
            pipe = PcmPipe()
            self._pipes.append(pipe)
            source.set_remote_sink(pipe)
            target.replace_source(pipe)

    def stats(self) -> list[Any]:
        return []

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.close()


def _pcm_bridge(a: PeerConnection, b: PeerConnection) -> PcmBridge:
    return PcmBridge([(a, b), (b, a)])


def _pcm_echo(pc: PeerConnection) -> PcmBridge:
    return PcmBridge([(pc, pc)])


def install_gateway_baseline() -> Callable[[], PeerConnection]:
    """Make this process' gateway bridge like aiortc alone would (see the module doc).

    Returns the leg-media factory to give the Gateway (legs on aiortc's receive path).
    """
    media_bridge.bridge = _pcm_bridge  # type: ignore[assignment]
    media_bridge.echo = _pcm_echo  # type: ignore[assignment]

    def new_pc() -> PeerConnection:
        return PeerConnection(
            ice_servers=[], codec_preferences=("opus", "pcmu"), receive_path="aiortc"
        )

    return new_pc


def aiortc_device_pc(configuration: Mapping[str, Any], **options: Any) -> PeerConnection:
    """A device's peer connection on aiortc's receive path."""
    return PeerConnection(
        ice_servers=list(configuration.get("iceServers") or []),
        receive_path="aiortc",
        **options,
    )
