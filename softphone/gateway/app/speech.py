"""``<Say>``'s embedded voice: espeak-ng, run as a subprocess, cached per sentence.

What: :class:`Speech` turns a ``<Say>`` (text, voice, language) into PCM in the
backend format (48 kHz mono int16). TwiML names voices Twilio's way (``man``,
``woman``, ``alice``, ``Polly.Joanna`` …) and languages as BCP 47 tags (``en-US``);
both map onto espeak-ng's language voices and its male/female variants, so any
document Twilio accepts speaks here. Nothing is sent anywhere: speech is made on the
gateway's own machine.

Why a cache: IVR prompts repeat ("Press 1 for sales…") on every call; synthesis costs
tens of milliseconds per sentence, the cache makes the repeat free (bounded in bytes).
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import wave
from collections import OrderedDict

import numpy as np

from softphone.audio_backends.analysis import resample
from softphone.audio_backends.base import SAMPLE_RATE, Pcm

log = logging.getLogger("softphone.gateway.speech")

MAX_TEXT_CHARS = 4096
"""Twilio's ``<Say>`` limit; longer text is cut (and logged)."""
CACHE_BYTES = 32 * 1024 * 1024
SPEECH_RATE_WPM = 160

_FEMALE = ("woman", "alice", "polly.joanna", "polly.salli", "polly.kimberly", "polly.amy")


def espeak_voice(voice: str, language: str) -> str:
    """The espeak-ng ``-v`` value for a TwiML ``voice`` and ``language``.

    ``en-US`` -> ``en-us``; a female TwiML voice (``woman``, ``alice``, most
    ``Polly.*`` and ``Google.*-F`` names) adds espeak-ng's ``+f3`` variant.
    """
    lang = (language or "en-US").strip().lower().replace("_", "-") or "en-us"
    name = voice.strip().lower()
    female = name in _FEMALE or name.endswith(("-f", "-c", "-e", "-g", "-h")) or "female" in name
    return f"{lang}+f3" if female else lang


class SpeechUnavailable(RuntimeError):
    """espeak-ng is not installed (the message says how to install it)."""


class Speech:
    """Synthesises ``<Say>`` text with espeak-ng; an LRU cache bounded in bytes."""

    def __init__(self, executable: str | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        self._executable = executable
        self._cache: OrderedDict[tuple[str, str], Pcm] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    def _espeak(self) -> str:
        found = self._executable or shutil.which("espeak-ng")
        if found is None:
            raise SpeechUnavailable(
                "<Say> needs espeak-ng, which is not installed (apt-get install espeak-ng)"
            )
        return found

    async def say(self, text: str, voice: str, language: str) -> Pcm:
        """``text`` spoken in ``voice``/``language`` as 48 kHz mono int16 PCM.

        Raises :class:`SpeechUnavailable` without espeak-ng, RuntimeError when it fails.
        """
        if len(text) > MAX_TEXT_CHARS:
            log.warning("<Say> text of %d characters cut to %d", len(text), MAX_TEXT_CHARS)
            text = text[:MAX_TEXT_CHARS]
        key = (espeak_voice(voice, language), text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        pcm = await self._synthesise(*key)
        self._remember(key, pcm)
        return pcm

    async def _synthesise(self, voice: str, text: str) -> Pcm:
        espeak = self._espeak()
        process = await asyncio.create_subprocess_exec(
            espeak,
            "-v",
            voice,
            "-s",
            str(SPEECH_RATE_WPM),
            "--stdout",
            "--",  # the text may start with a dash
            text,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        wav, err = await process.communicate()
        if process.returncode != 0 or not wav:
            if voice != "en-us":  # an unknown language: speak it with the default voice
                log.warning("espeak-ng has no voice %r; using en-us", voice)
                return await self._synthesise("en-us", text)
            raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        return _wav_to_pcm(wav)

    def _remember(self, key: tuple[str, str], pcm: Pcm) -> None:
        self._cache[key] = pcm
        self._cached += pcm.nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= dropped.nbytes


def _wav_to_pcm(data: bytes) -> Pcm:
    """espeak-ng's WAV (16-bit mono, 22.05 kHz) as backend PCM.

    espeak-ng writes a streaming header with the data size unset; ``wave`` reads
    the frames that are there.
    """
    with wave.open(io.BytesIO(data), "rb") as wav:
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes() or 1 << 30)
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    return resample(pcm, rate, SAMPLE_RATE)


__all__ = ["Speech", "SpeechUnavailable", "espeak_voice"]
