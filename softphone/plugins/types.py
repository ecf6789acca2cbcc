"""The shapes plugins exchange with the SDK: processors, peer connections, remote sources.

These are structural (``typing.Protocol``): a plugin needs none of our classes
to satisfy them, only the methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from softphone.audio_backends.base import AudioSink, AudioSource, Pcm

__all__ = [
    "AudioProcessor",
    "CaptureTiming",
    "PeerConnectionLike",
    "PlayoutTiming",
    "RemoteSource",
    "capture_delay_s",
    "is_remote_source",
    "playout_delay_s",
]


@runtime_checkable
class AudioProcessor(Protocol):
    """The JS ``AudioProcessor``: turns a stream into a processed stream, and cleans up.

    ``create_processed_stream`` gets the input (an ``AudioSource``) and returns
    the source to use instead, for example one that reads the input and applies
    a noise filter. Both methods may be coroutines. Local processors change
    what the far end hears; remote processors change what the speaker plays
    (the remote audio is offered to them as a source, block by block).
    """

    def create_processed_stream(self, stream: AudioSource) -> AudioSource | Awaitable[AudioSource]:
        """Return the processed stream reading from ``stream``."""
        ...

    def destroy_processed_stream(self, stream: AudioSource) -> Awaitable[None] | None:
        """Release what :meth:`create_processed_stream` set up for ``stream``."""
        ...


@runtime_checkable
class CaptureTiming(Protocol):
    """A source that captures from real hardware and says how late its audio is read.

    Implementing it marks the source as a microphone: voice processing (echo
    cancellation, noise suppression, gain control) is on for it by default,
    as browsers do for ``getUserMedia``, and the echo canceller uses the
    delay to line the microphone up with what the speakers played.
    ``PortAudioSource`` implements it; virtual inputs (files, tones, memory
    pipes) do not.
    """

    @property
    def capture_delay_s(self) -> float:
        """How long ago the first sample the next ``read`` returns was captured."""
        ...


@runtime_checkable
class PlayoutTiming(Protocol):
    """A sink that plays on real hardware and says how late what is written now is heard.

    The echo canceller's reference is what the output mixer writes, placed at
    the time it is heard: the write time plus this delay (queued audio plus
    the device's own latency). A sink without it counts as heard at once.
    """

    @property
    def playout_delay_s(self) -> float:
        """How long until a sample written now comes out of the speaker."""
        ...


def capture_delay_s(source: object) -> float:
    """``source.capture_delay_s`` for a :class:`CaptureTiming` source, else 0."""
    if isinstance(source, CaptureTiming):
        return float(source.capture_delay_s)
    return 0.0


def playout_delay_s(sink: object) -> float:
    """``sink.playout_delay_s`` for a :class:`PlayoutTiming` sink, else 0."""
    if isinstance(sink, PlayoutTiming):
        return float(sink.playout_delay_s)
    return 0.0


@runtime_checkable
class RemoteSource(Protocol):
    """An input that lives elsewhere (e.g. in a media agent), named by a device id there.

    Such a source cannot be read in this process: only a peer connection of the
    same plugin can use it. ``read`` returns silence.
    """

    remote_device_id: str

    def read(self, samples: int) -> Any:
        """Silence: the audio is not here."""
        ...

    def close(self) -> None:
        """Forget the reference."""
        ...


def is_remote_source(source: object) -> bool:
    """Whether ``source`` is a :class:`RemoteSource` (a device in another process)."""
    return isinstance(getattr(source, "remote_device_id", None), str)


class PeerConnectionLike(Protocol):
    """What a Call needs from a media adapter (``softphone.media.PeerConnection`` has it).

    A ``softphone_create_peer_connection`` plugin returns an object of this
    shape: aiortc in this process (the default), or a proxy driving a peer
    connection somewhere else (the media agent).
    """

    on_dtmf: Callable[[str], None] | None
    on_connection_state_change: Callable[[str], None] | None

    @property
    def muted(self) -> bool:
        """Whether silence is sent instead of the source."""
        ...

    @muted.setter
    def muted(self, value: bool) -> None: ...

    @property
    def codec(self) -> str | None:
        """The negotiated audio codec (``PCMU``, ``opus``), None before negotiation."""
        ...

    @property
    def local_sdp(self) -> str | None:
        """The applied local description, None before one."""
        ...

    @property
    def can_insert_dtmf(self) -> bool:
        """Whether RFC 4733 DTMF was negotiated."""
        ...

    def replace_source(self, source: AudioSource | None) -> None:
        """Send ``source`` from the next frame on, without renegotiation."""
        ...

    def set_remote_sink(self, sink: AudioSink | None) -> None:
        """Where received audio goes."""
        ...

    def set_local_tap(self, tap: Callable[[Pcm], None] | None) -> None:
        """Call ``tap`` with each block sent (the call's input meter); may do nothing."""
        ...

    async def create_offer(self, source: AudioSource | None) -> str:
        """Create and apply a local offer; return its SDP."""
        ...

    async def apply_answer(self, sdp: str) -> None:
        """Apply the remote answer."""
        ...

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        """Apply a remote offer and return the applied local answer's SDP."""
        ...

    async def insert_dtmf(self, tones: str, duration_ms: int = 160, gap_ms: int = 70) -> None:
        """Send RFC 4733 DTMF."""
        ...

    async def get_stats(self) -> dict[str, Any]:
        """Cumulative media counters (see ``PeerConnection.get_stats``)."""
        ...

    async def close(self) -> None:
        """Stop media."""
        ...
