"""What every application call of one gateway shares: webhooks, speech, audio, recordings.

What: :class:`AppServices` is built once by the gateway and handed to the call
router; each :class:`~softphone.gateway.app.app_call.AppCall` uses it to request
webhooks, speak ``<Say>``, load ``<Play>`` audio, and store ``<Record>`` files (with
their RecordingSid, in the call store when there is one, under its recordings folder).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from softphone.gateway.app.play_audio import PlayAudio
from softphone.gateway.app.speech import Speech
from softphone.gateway.app.webhooks import Webhooks
from softphone.gateway.call_store import AsyncCallStore, CallStore, Recording


def recording_sid() -> str:
    """A new RecordingSid: ``RE`` and 32 hex digits, as Twilio's."""
    return "RE" + secrets.token_hex(16)


@attrs.define(kw_only=True)
class AppServices:
    """Shared by every application call of one gateway."""

    webhooks: Webhooks = attrs.field(factory=Webhooks)
    speech: Speech = attrs.field(factory=Speech)
    audio: PlayAudio = attrs.field(factory=PlayAudio)
    store: AsyncCallStore | None = None
    """The call store: recordings are listed there (and served by the REST API)."""
    recordings_dir: Path | None = None
    """Where recordings go without a store (default: a temporary folder)."""
    public_url: Callable[[], str | None] = lambda: None
    """The REST API's base URL (``https://host:port``) once known: recordings' URLs."""
    clock: Callable[[], float] = time.time

    def recordings_folder(self) -> Path:
        """Where a new recording file goes."""
        if self.store is not None:
            return self.store.recordings_dir
        if self.recordings_dir is None:
            self.recordings_dir = Path(tempfile.mkdtemp(prefix="softphone-recordings-"))
        return self.recordings_dir

    def recording_url(self, account_sid: str, sid: str) -> str:
        """The ``RecordingUrl`` an application gets: the REST API's resource, without
        extension (append ``.wav`` for the audio, as with Twilio)."""
        base = self.public_url() or "http://127.0.0.1"
        return f"{base}/2010-04-01/Accounts/{account_sid}/Recordings/{sid}"

    def keep_recording(self, recording: Recording) -> None:
        """List ``recording`` in the call store (queued; nothing without a store)."""
        if self.store is not None:
            self.store.submit(CallStore.add_recording, recording)

    async def close(self) -> None:
        """Finish callbacks in flight and close pooled connections."""
        await self.webhooks.close()


__all__ = ["AppServices", "recording_sid"]
