"""The ``default`` input and output: the sound card when there is one, else silence.

What: :class:`DefaultDevices` answers acquisitions of the ``default`` devices last
(pluggy ``trylast``; any plugin may answer before it). Like a browser's
``getUserMedia`` it uses the machine's default microphone and speaker, through
PortAudio, when PortAudio is installed and has them. Otherwise calls send silence
and their audio is discarded, and one WARNING per process says why and what to
install (``softphone[portaudio]`` and ``libportaudio2``): a :class:`SoundCardWarning`,
shown on standard error by Python whatever the logging setup, and a log line.

Apps that want no sound card (servers, bots, tests) say so with the Device option
``real_devices=False``, or for a whole process with ``SOFTPHONE_REAL_DEVICES=0``; an
app that passes ``file_input_stream``/``speaker`` or selects devices is not affected.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.devices import (
    AUDIO_INPUT,
    AUDIO_OUTPUT,
    AudioDeviceError,
    DeviceKind,
    MediaDeviceInfo,
)
from softphone.audio_backends.null import NullSink, NullSource
from softphone.plugins.markers import hookimpl

log = logging.getLogger("softphone.plugins.default_devices")

REAL_DEVICES_ENV = "SOFTPHONE_REAL_DEVICES"
"""``0`` (or ``false``/``no``/``off``): no Device of this process opens a sound card by
itself, whatever its options say when they leave ``real_devices`` unset."""
_WORDS = {AUDIO_INPUT: ("microphone", "send silence"), AUDIO_OUTPUT: ("speaker", "play nowhere")}
_warned: set[str] = set()
"""What was already warned about in this process (one WARNING each)."""


def wants_real_devices(options: Any) -> bool:
    """Whether ``default`` means the sound card for a Device with these options."""
    chosen = getattr(options, "real_devices", None)
    if chosen is not None:
        return bool(chosen)
    return os.environ.get(REAL_DEVICES_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class SoundCardWarning(UserWarning):
    """No sound card is used for the ``default`` devices (the message says why)."""


def _warn_once(key: str, message: str) -> None:
    """One warning per process: as a Python warning (shown whatever the logging setup,
    whose default level, like JS ``logLevel``, hides warnings) and in the log."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)
        warnings.warn(message, SoundCardWarning, stacklevel=2)


def why_unlisted(device_id: str) -> str:
    """Why a ``portaudio:`` id is not among the devices, for an error message ("" for
    other ids): what to install, or that PortAudio does not list it."""
    from softphone.audio_backends import portaudio

    if not device_id.startswith(portaudio.PREFIX):
        return ""
    try:
        portaudio.load_sounddevice()
    except portaudio.PortAudioUnavailableError as exc:
        return f" ({exc})"
    return " (PortAudio does not list it: see device.audio.available_input_devices)"


def default_speaker() -> AudioSink | None:
    """The sound card's default output, opened; None (with one WARNING) if there is none."""
    sink = _sound_card(AUDIO_OUTPUT)
    return sink if isinstance(sink, AudioSink) else None


def _sound_card(kind: DeviceKind) -> AudioSource | AudioSink | None:
    """PortAudio's default device of ``kind``, opened; None (with one WARNING) if not."""
    from softphone.audio_backends import portaudio

    noun, fallback = _WORDS[kind]
    try:
        portaudio.load_sounddevice()
    except portaudio.PortAudioUnavailableError as exc:
        _warn_once(
            "missing",
            f"No sound card is used: {exc}. Until then calls send silence and play "
            "nowhere; or give the Device file_input_stream/speaker, or select devices "
            "with device.audio",
        )
        return None
    defaults = [
        d
        for d in portaudio.list_devices()
        if d.kind == kind and d.device_id == portaudio.DEFAULT_DEVICE_ID
    ]
    if not defaults:
        _warn_once(f"none-{kind}", f"PortAudio finds no default {noun}: calls {fallback}")
        return None
    try:
        if kind == AUDIO_INPUT:
            return portaudio.PortAudioSource(portaudio.DEFAULT_DEVICE_ID)
        return portaudio.PortAudioSink(portaudio.DEFAULT_DEVICE_ID)
    except (AudioDeviceError, OSError) as exc:
        _warn_once(f"open-{kind}", f"cannot open the default {noun} ({exc}): calls {fallback}")
        return None


class DefaultDevices:
    """``default`` of each kind: the sound card's defaults, else silence and discard."""

    def __init__(self, options: Callable[[], Any] = lambda: None) -> None:
        """``options()``: the owner's current options (its ``real_devices``)."""
        self._options = options

    @hookimpl(trylast=True)
    def softphone_enumerate_devices(self) -> list[MediaDeviceInfo]:
        """``default`` of each kind."""
        return [
            MediaDeviceInfo("default", AUDIO_INPUT, "Default", "default"),
            MediaDeviceInfo("default", AUDIO_OUTPUT, "Default", "default"),
        ]

    @hookimpl(trylast=True)
    def softphone_get_user_media(self, device_id: str | None) -> AudioSource | None:
        """The default microphone, or silence."""
        if device_id not in (None, "default"):
            return None
        if wants_real_devices(self._options()):
            source = _sound_card(AUDIO_INPUT)
            if isinstance(source, AudioSource):
                log.info("the call captures from the default microphone (portaudio:default)")
                return source
        log.info("no audio input: the call sends silence")
        return NullSource()

    @hookimpl(trylast=True)
    def softphone_get_output_sink(self, device_id: str) -> AudioSink | None:
        """The default speaker, or a sink that discards."""
        if device_id != "default":
            return None
        sink = default_speaker() if wants_real_devices(self._options()) else None
        return sink if sink is not None else NullSink()


__all__ = [
    "REAL_DEVICES_ENV",
    "DefaultDevices",
    "SoundCardWarning",
    "default_speaker",
    "wants_real_devices",
    "why_unlisted",
]
