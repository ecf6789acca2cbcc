"""``<Play>``'s audio: an http(s) URL or a file from the gateway's media folder.

What: :class:`PlayAudio` loads what a ``<Play>`` names and returns it as backend PCM
(48 kHz mono int16), decoding any format FFmpeg reads (WAV, MP3, OGG …).

* ``http://`` / ``https://`` URLs are fetched with aiohttp (bounded in size and time);
* ``file:NAME`` (or ``file:///NAME``) is ``NAME`` inside the configured media folder
  (``softphone gateway --media-dir``); names that leave the folder are refused.

Decoded audio is cached per URL (bounded in bytes): hold music and beeps repeat.
Errors raise :class:`PlayError` with a message naming the URL; the call's log says it
and the verb is skipped, as Twilio skips audio it cannot fetch.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import numpy as np

from softphone.audio_backends.base import Pcm
from softphone.audio_backends.file import FileSource

log = logging.getLogger("softphone.gateway.play")

MAX_AUDIO_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 600
"""Longest audio a ``<Play>`` plays (decoding stops there)."""
CACHE_BYTES = 64 * 1024 * 1024
FETCH_TIMEOUT_S = 15.0


class PlayError(Exception):
    """The audio of a ``<Play>`` cannot be had (the message says which and why)."""


class PlayAudio:
    """Loads ``<Play>`` URLs as PCM, with a byte-bounded cache."""

    def __init__(self, media_dir: Path | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        self.media_dir = media_dir.resolve() if media_dir is not None else None
        self._cache: OrderedDict[str, Pcm] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    async def load(self, url: str) -> Pcm:
        """The audio at ``url`` as 48 kHz mono int16 (raises :class:`PlayError`)."""
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            data = await _download(url)
            pcm = await asyncio.to_thread(_decode_bytes, data, url)
        elif scheme == "file":
            pcm = await asyncio.to_thread(_decode_file, self._local(url), url)
        else:
            raise PlayError(f"cannot play {url!r}: only http(s) and file: URLs are played")
        self._remember(url, pcm)
        return pcm

    def _local(self, url: str) -> Path:
        if self.media_dir is None:
            raise PlayError(f"cannot play {url!r}: the gateway has no media folder (--media-dir)")
        name = unquote(urlsplit(url).path).lstrip("/")
        path = (self.media_dir / name).resolve()
        if not path.is_relative_to(self.media_dir) or not path.is_file():
            raise PlayError(f"cannot play {url!r}: no such file in the media folder")
        return path

    def _remember(self, url: str, pcm: Pcm) -> None:
        self._cache[url] = pcm
        self._cached += pcm.nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= dropped.nbytes


async def _download(url: str) -> bytes:
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise PlayError(f"cannot play {url}: HTTP {response.status}")
            data = await response.content.read(MAX_AUDIO_BYTES + 1)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise PlayError(f"cannot play {url}: {exc or type(exc).__name__}") from exc
    if len(data) > MAX_AUDIO_BYTES:
        raise PlayError(f"cannot play {url}: more than {MAX_AUDIO_BYTES} bytes")
    return data


def _decode_bytes(data: bytes, url: str) -> Pcm:
    with tempfile.NamedTemporaryFile(suffix=Path(urlsplit(url).path).suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        return _decode_file(Path(tmp.name), url)


def _decode_file(path: Path, url: str) -> Pcm:
    try:
        with FileSource(path) as source:
            chunks: list[Pcm] = []
            for _ in range(MAX_SECONDS * 50):
                if source.finished:
                    break
                chunks.append(source.read(960))
    except Exception as exc:  # av raises many kinds for a file that is not audio
        raise PlayError(f"cannot play {url}: not audio FFmpeg can decode ({exc})") from exc
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if not len(pcm):
        raise PlayError(f"cannot play {url}: no audio in it")
    return pcm


__all__ = ["PlayAudio", "PlayError"]
