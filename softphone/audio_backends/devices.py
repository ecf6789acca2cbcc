"""``MediaDeviceInfo``: what device enumeration reports, as in the browser API.

Every backend that has devices (PortAudio's sound cards, or the virtual
devices of the file, tone, memory and null backends) describes each one with
a ``MediaDeviceInfo``, so apps pick inputs and outputs by ``device_id`` exactly
as JS apps do with ``navigator.mediaDevices.enumerateDevices()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["AUDIO_INPUT", "AUDIO_OUTPUT", "AudioDeviceError", "DeviceKind", "MediaDeviceInfo"]

DeviceKind = Literal["audioinput", "audiooutput"]
AUDIO_INPUT: DeviceKind = "audioinput"
AUDIO_OUTPUT: DeviceKind = "audiooutput"


class AudioDeviceError(RuntimeError):
    """A sound device could not be found or opened (the message says which and why)."""


def _check_kind(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    if value not in (AUDIO_INPUT, AUDIO_OUTPUT):
        raise ValueError(f"kind must be 'audioinput' or 'audiooutput', got {value!r}")


@attrs.frozen
class MediaDeviceInfo:
    """One audio device: immutable and hashable, so collections can hold it in sets.

    ``device_id`` is unique per kind; ``group_id`` is shared by the input and
    output of one physical device (or one backend's virtual devices).
    """

    device_id: str
    kind: DeviceKind = attrs.field(validator=_check_kind)
    label: str = ""
    group_id: str = ""

    def to_json(self) -> dict[str, str]:
        """The JS spelling (``deviceId``, ``kind``, ``label``, ``groupId``), for the wire."""
        return {
            "deviceId": self.device_id,
            "kind": self.kind,
            "label": self.label,
            "groupId": self.group_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MediaDeviceInfo:
        """Read either spelling (``deviceId`` or ``device_id``); raises ValueError if malformed."""
        device_id = data.get("deviceId", data.get("device_id"))
        if not isinstance(device_id, str):
            raise ValueError(f"device info without a string deviceId: {data!r}")
        return cls(
            device_id=device_id,
            kind=data.get("kind"),  # type: ignore[arg-type]  # validated by attrs
            label=str(data.get("label") or ""),
            group_id=str(data.get("groupId", data.get("group_id")) or ""),
        )
