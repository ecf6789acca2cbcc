"""``--input`` and ``--output``: which audio a phone sends and where what it hears goes.

Inputs: ``tone:HZ`` (or ``tone:HZ+HZ`` for a dual tone), ``file:PATH`` (any format
FFmpeg reads), ``portaudio`` (the default sound card) or ``portaudio:ID`` (an id that
``softphone phone --list-devices`` prints), ``null`` (silence). Outputs: ``file:PATH``
(a WAV recording), ``portaudio[:ID]``, ``null`` (discard). Parsing is pure; opening
the devices is :mod:`softphone.phone.audio_setup`'s job.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "INPUT_HELP",
    "OUTPUT_HELP",
    "InputSpec",
    "OutputSpec",
    "parse_input",
    "parse_output",
]

INPUT_HELP = "tone:HZ[+HZ], file:PATH, portaudio[:ID] or null"
OUTPUT_HELP = "file:PATH, portaudio[:ID] or null"
PORTAUDIO_PREFIX = "portaudio:"

InputKind = Literal["tone", "file", "portaudio", "null"]
OutputKind = Literal["file", "portaudio", "null"]


@attrs.frozen
class InputSpec:
    """What a phone sends: a tone, a file, a sound card or silence."""

    kind: InputKind
    frequencies: tuple[float, ...] = ()
    """The tone's frequencies in Hz (``tone`` only)."""
    path: str | None = None
    """The audio file (``file`` only)."""
    device_id: str | None = None
    """The PortAudio device id, ``portaudio:...`` (``portaudio`` only)."""

    def describe(self) -> str:
        """How the transcript names this input."""
        if self.kind == "tone":
            return "tone " + " + ".join(f"{f:g} Hz" for f in self.frequencies)
        if self.kind == "file":
            return f"file {self.path}"
        if self.kind == "portaudio":
            return f"sound card {self.device_id}"
        return "silence"


@attrs.frozen
class OutputSpec:
    """Where what a phone hears goes: a WAV file, a sound card or nowhere."""

    kind: OutputKind
    path: str | None = None
    """The WAV file (``file`` only)."""
    device_id: str | None = None
    """The PortAudio device id, ``portaudio:...`` (``portaudio`` only)."""

    def describe(self) -> str:
        """How the transcript names this output."""
        if self.kind == "file":
            return f"file {self.path}"
        if self.kind == "portaudio":
            return f"sound card {self.device_id}"
        return "nowhere (discarded)"


def _portaudio_id(rest: str) -> str:
    """``portaudio`` / ``portaudio:ID`` → the backend's device id."""
    return PORTAUDIO_PREFIX + (rest or "default")


def _split(text: str) -> tuple[str, str]:
    kind, _, rest = text.strip().partition(":")
    return kind.lower(), rest


def parse_input(text: str) -> InputSpec:
    """Parse an ``--input`` value; ``ValueError`` naming the accepted forms otherwise."""
    kind, rest = _split(text)
    if kind == "tone":
        try:
            freqs = tuple(float(part) for part in rest.split("+"))
        except ValueError:
            raise ValueError(f"--input {text!r}: tone:HZ needs a frequency in Hz") from None
        if not all(0 < f < 24_000 for f in freqs):
            raise ValueError(f"--input {text!r}: tone frequencies must be within (0, 24000) Hz")
        return InputSpec("tone", frequencies=freqs)
    if kind == "file":
        if not rest:
            raise ValueError(f"--input {text!r}: file:PATH needs a path")
        return InputSpec("file", path=rest)
    if kind == "portaudio":
        return InputSpec("portaudio", device_id=_portaudio_id(rest))
    if kind == "null" and not rest:
        return InputSpec("null")
    raise ValueError(f"--input {text!r}: use {INPUT_HELP}")


def parse_output(text: str) -> OutputSpec:
    """Parse an ``--output`` value; ``ValueError`` naming the accepted forms otherwise."""
    kind, rest = _split(text)
    if kind == "file":
        if not rest:
            raise ValueError(f"--output {text!r}: file:PATH needs a path")
        return OutputSpec("file", path=rest)
    if kind == "portaudio":
        return OutputSpec("portaudio", device_id=_portaudio_id(rest))
    if kind == "null" and not rest:
        return OutputSpec("null")
    raise ValueError(f"--output {text!r}: use {OUTPUT_HELP}")
