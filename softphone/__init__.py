"""softphone: the Twilio Voice JS SDK 2.x API in asyncio Python, and its gateway.

The public API is importable from here::

    from softphone import Device, Call, TwilioError, DeviceOptions, FileSource, ToneSource

Names are loaded on first use (PEP 562), so ``import softphone`` and the command
line stay fast; type checkers see every name with its real type (the package ships
``py.typed``). The sub-packages (``softphone.core``, ``softphone.audio_backends``,
``softphone.plugins``, ``softphone.agent``, ``softphone.gateway``) hold the rest.

The library never configures logging: it logs to the ``softphone`` logger and its
children, whose level the Device option ``log_level`` sets (default ``"error"``).
Attach a handler to see the messages, e.g. ``logging.basicConfig()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from softphone.version import PACKAGE_NAME, __version__

if TYPE_CHECKING:
    from softphone.agent import MediaAgent, MediaAgentPlugin
    from softphone.audio_backends import (
        FRAME_SAMPLES,
        SAMPLE_RATE,
        AudioDeviceError,
        AudioSink,
        AudioSource,
        FileSink,
        FileSource,
        MediaDeviceInfo,
        MemorySink,
        MemorySource,
        NullSink,
        NullSource,
        Pcm,
        SilenceSource,
        ToneSource,
    )
    from softphone.audio_backends.portaudio import PortAudioSink, PortAudioSource
    from softphone.core.audio_helper import AudioHelper
    from softphone.core.call import Call, CallDirection, CallState, Codec
    from softphone.core.device import Device, DeviceEventName, DeviceState
    from softphone.core.errors import (
        AuthorizationErrors,
        ClientErrors,
        GeneralErrors,
        InvalidArgumentError,
        InvalidStateError,
        MalformedRequestErrors,
        MediaErrors,
        NotSupportedError,
        SignalingErrors,
        SignatureValidationErrors,
        SIPServerErrors,
        TwilioError,
        UserMediaErrors,
        get_error_by_code,
        has_error_by_code,
    )
    from softphone.core.events import EventEmitter
    from softphone.core.options import DeviceOptions
    from softphone.core.output_devices import OutputDeviceCollection
    from softphone.core.preflight_report import PreflightTestReport, PreflightWarning
    from softphone.core.preflight_test import (
        PreflightEvent,
        PreflightOptions,
        PreflightStatus,
        PreflightTest,
    )
    from softphone.core.remote_audio import RemoteAudio
    from softphone.core.rtc_sample import RTCSample
    from softphone.gateway.tls import client_ssl_context
    from softphone.plugins import AudioProcessor, PeerConnectionLike, hookimpl

_EXPORTS: dict[str, str] = {
    # The JS SDK's classes.
    "Device": "softphone.core.device",
    "DeviceState": "softphone.core.device",
    "DeviceEventName": "softphone.core.device",
    "DeviceOptions": "softphone.core.options",
    "Call": "softphone.core.call",
    "CallState": "softphone.core.call",
    "CallDirection": "softphone.core.call",
    "Codec": "softphone.core.call",
    "AudioHelper": "softphone.core.audio_helper",
    "OutputDeviceCollection": "softphone.core.output_devices",
    "PreflightTest": "softphone.core.preflight_test",
    "PreflightOptions": "softphone.core.preflight_test",
    "PreflightStatus": "softphone.core.preflight_test",
    "PreflightEvent": "softphone.core.preflight_test",
    "PreflightTestReport": "softphone.core.preflight_report",
    "PreflightWarning": "softphone.core.preflight_report",
    "RTCSample": "softphone.core.rtc_sample",
    "RemoteAudio": "softphone.core.remote_audio",
    "EventEmitter": "softphone.core.events",
    # Errors: TwilioError (every coded error), its JS namespaces, the plain misuse errors.
    "TwilioError": "softphone.core.errors",
    "AuthorizationErrors": "softphone.core.errors",
    "ClientErrors": "softphone.core.errors",
    "GeneralErrors": "softphone.core.errors",
    "MalformedRequestErrors": "softphone.core.errors",
    "MediaErrors": "softphone.core.errors",
    "SIPServerErrors": "softphone.core.errors",
    "SignalingErrors": "softphone.core.errors",
    "SignatureValidationErrors": "softphone.core.errors",
    "UserMediaErrors": "softphone.core.errors",
    "InvalidArgumentError": "softphone.core.errors",
    "InvalidStateError": "softphone.core.errors",
    "NotSupportedError": "softphone.core.errors",
    "get_error_by_code": "softphone.core.errors",
    "has_error_by_code": "softphone.core.errors",
    # Audio: where call audio comes from and goes to.
    "AudioSource": "softphone.audio_backends",
    "AudioSink": "softphone.audio_backends",
    "Pcm": "softphone.audio_backends",
    "SAMPLE_RATE": "softphone.audio_backends",
    "FRAME_SAMPLES": "softphone.audio_backends",
    "FileSource": "softphone.audio_backends",
    "FileSink": "softphone.audio_backends",
    "ToneSource": "softphone.audio_backends",
    "NullSource": "softphone.audio_backends",
    "NullSink": "softphone.audio_backends",
    "SilenceSource": "softphone.audio_backends",
    "MemorySource": "softphone.audio_backends",
    "MemorySink": "softphone.audio_backends",
    "MediaDeviceInfo": "softphone.audio_backends",
    "AudioDeviceError": "softphone.audio_backends",
    "PortAudioSource": "softphone.audio_backends.portaudio",
    "PortAudioSink": "softphone.audio_backends.portaudio",
    # Plugins, the media agent, TLS trust for a gateway.
    "AudioProcessor": "softphone.plugins",
    "PeerConnectionLike": "softphone.plugins",
    "hookimpl": "softphone.plugins",
    "MediaAgent": "softphone.agent",
    "MediaAgentPlugin": "softphone.agent",
    "client_ssl_context": "softphone.gateway.tls",
}

__all__ = [
    "FRAME_SAMPLES",
    "PACKAGE_NAME",
    "SAMPLE_RATE",
    "AudioDeviceError",
    "AudioHelper",
    "AudioProcessor",
    "AudioSink",
    "AudioSource",
    "AuthorizationErrors",
    "Call",
    "CallDirection",
    "CallState",
    "ClientErrors",
    "Codec",
    "Device",
    "DeviceEventName",
    "DeviceOptions",
    "DeviceState",
    "EventEmitter",
    "FileSink",
    "FileSource",
    "GeneralErrors",
    "InvalidArgumentError",
    "InvalidStateError",
    "MalformedRequestErrors",
    "MediaAgent",
    "MediaAgentPlugin",
    "MediaDeviceInfo",
    "MediaErrors",
    "MemorySink",
    "MemorySource",
    "NotSupportedError",
    "NullSink",
    "NullSource",
    "OutputDeviceCollection",
    "Pcm",
    "PeerConnectionLike",
    "PortAudioSink",
    "PortAudioSource",
    "PreflightEvent",
    "PreflightOptions",
    "PreflightStatus",
    "PreflightTest",
    "PreflightTestReport",
    "PreflightWarning",
    "RTCSample",
    "RemoteAudio",
    "SIPServerErrors",
    "SignalingErrors",
    "SignatureValidationErrors",
    "SilenceSource",
    "ToneSource",
    "TwilioError",
    "UserMediaErrors",
    "__version__",
    "client_ssl_context",
    "get_error_by_code",
    "has_error_by_code",
    "hookimpl",
]


if not TYPE_CHECKING:  # hidden from type checkers: a misspelt import stays an error there

    def __getattr__(name: str) -> Any:
        """Import a public name's module on first use and cache the name here."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
