"""The JS-style DeviceOptions overrides, as ordinary plugins.

``get_user_media``, ``enumerate_devices`` and ``rtc_peer_connection`` (JS
``getUserMedia``, ``enumerateDevices``, ``RTCPeerConnection``) replace the
platform's functions in the JS SDK. Here each is a plugin that runs before
every other (``tryfirst``, or a wrapper for enumeration) and reads the option
at call time, so ``device.update_options(...)`` takes effect on the next call
and an unset option simply lets the other plugins answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Mapping
from typing import Any

from softphone.plugins.markers import hookimpl

__all__ = ["EnumerateDevicesOverride", "GetUserMediaOverride", "RtcPeerConnectionOverride"]

OptionsProvider = Callable[[], Any]


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class GetUserMediaOverride:
    """``options.get_user_media(constraints)`` answers every acquisition when set.

    As in JS, a replaced ``getUserMedia`` is used for the default input and for
    explicit device ids alike. It may be sync or async.
    """

    def __init__(self, options: OptionsProvider) -> None:
        self._options = options

    @hookimpl(tryfirst=True)
    def softphone_get_user_media(self, constraints: Mapping[str, Any]) -> Any:
        """Call the override, if any."""
        fn = getattr(self._options(), "get_user_media", None)
        if fn is None:
            return None
        return _resolve(fn(dict(constraints)))


class EnumerateDevicesOverride:
    """``options.enumerate_devices()`` replaces the whole device list when set.

    A wrapper around every other implementation: the JS option replaces the
    browser's enumeration, so the backends' devices are not listed then.
    """

    def __init__(self, options: OptionsProvider) -> None:
        self._options = options

    @hookimpl(wrapper=True)
    def softphone_enumerate_devices(self) -> Generator[None, list[Any], list[Any]]:
        """Let the others enumerate, then replace their answer with the override's."""
        result = yield
        fn = getattr(self._options(), "enumerate_devices", None)
        if fn is None:
            return result
        return [_resolve(fn())]


class RtcPeerConnectionOverride:
    """``options.rtc_peer_connection(configuration)`` builds every call's media adapter."""

    def __init__(self, options: OptionsProvider) -> None:
        self._options = options

    @hookimpl(tryfirst=True)
    def softphone_create_peer_connection(self, configuration: Mapping[str, Any]) -> Any:
        """Call the factory, if any."""
        fn = getattr(self._options(), "rtc_peer_connection", None)
        return fn(configuration) if fn is not None else None
