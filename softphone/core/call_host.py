"""What a Call needs from its Device, as small Protocols instead of the whole Device.

A :class:`~softphone.core.call.Call` asks its host for six things: the options in
force, the sounds (play one, stop ringing for a call), the insights publisher, an
input source, a peer connection, and where its remote audio goes. Naming exactly these lets a test
drive a Call with a small fake host, and keeps ``call`` from importing ``device``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.core.audio_helper import HelperCall
from softphone.core.options import DeviceOptions
from softphone.insights.publisher import EventPublisher
from softphone.media.peer_connection import PeerConnection


class CallSounds(Protocol):
    """The sounds a Call plays or stops."""

    def play(self, name: str) -> None:
        """Play the Device sound ``name`` (``disconnect``, ``dtmf1`` …)."""

    def stop_ringing_for(self, call: object) -> None:
        """Stop the incoming ringtone for ``call`` unless another call still rings."""


class CallHost(Protocol):
    """The Device as a Call sees it."""

    @property
    def options(self) -> DeviceOptions:
        """The Device options in force."""

    @property
    def sounds(self) -> CallSounds:
        """The Device's sounds."""

    @property
    def publisher(self) -> EventPublisher | None:
        """Where the call's insights events go (None: nowhere)."""

    async def audio_input(self, constraints: Mapping[str, Any] | None = None) -> AudioSource:
        """The audio source for a new call."""

    def create_peer_connection(self, configuration: Mapping[str, Any]) -> PeerConnection:
        """A media adapter for a new call."""

    def call_output(self, call: HelperCall) -> AudioSink | None:
        """Where ``call``'s remote audio goes once it opens (None: nowhere but its sinks)."""


__all__ = ["CallHost", "CallSounds"]
