"""``PhoneSettings``: everything ``softphone phone`` was asked to do, checked.

Kept apart from the modules that run a phone so the ``softphone`` command can build
its parser without importing the SDK, the gateway or Textual.
"""

from __future__ import annotations

import ssl
from typing import Any

import attrs

from softphone.phone.audio_specs import InputSpec, OutputSpec

__all__ = ["DEFAULT_IDENTITY", "PhoneSettings"]

DEFAULT_IDENTITY = "phone"


@attrs.define(kw_only=True)
class PhoneSettings:
    """Everything ``softphone phone`` was asked to do."""

    url: str | None = None
    """Signaling URL of the gateway; None starts a local dev gateway."""
    token: str | None = None
    """Access token for ``url``."""
    identity: str = DEFAULT_IDENTITY
    """Client name on the local dev gateway (a ``url``'s token names its own)."""
    gateway_port: int = 0
    """Port of the local dev gateway (0: a free one)."""
    ssl_context: ssl.SSLContext | None = None
    ice_servers: list[dict[str, Any]] = attrs.field(factory=list)
    media_address: str | None = None
    """Gather ICE candidates on this address only (127.0.0.1 for a gateway on loopback)."""
    input: InputSpec = attrs.field(factory=lambda: InputSpec("null"))
    output: OutputSpec = attrs.field(factory=lambda: OutputSpec("null"))
    sounds: bool = True
    """Ringtone, outgoing and disconnect sounds on the output (off in scripted mode)."""
    log_level: str = "warn"
    call: str | None = None
    """Scripted: the ``To`` to call."""
    answer: bool = False
    """Scripted: wait for one incoming call and answer it."""
    digits: str | None = None
    """Scripted: DTMF to send once connected."""
    hangup_after: float | None = None
    """Scripted: hang up this many seconds after connecting (None: wait for the far end)."""
    timeout: float = 60.0
    """Scripted: longest wait for the call to come in and connect."""

    @property
    def scripted(self) -> bool:
        """True when a call is scripted (``--call`` or ``--answer``): no UI."""
        return self.call is not None or self.answer
