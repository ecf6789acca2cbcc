"""Run a media agent from settings: what ``softphone media-agent`` does.

Kept out of the CLI module so apps and tests can start an agent in-process
with the same device declarations the command line accepts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import attrs

from softphone.agent.server import MediaAgent
from softphone.plugins.manager import SoftphonePluginManager

__all__ = ["AgentSettings", "build_agent", "parse_declaration", "serve_forever"]


def parse_declaration(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` → (name, value); raises ValueError with a usage hint."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    return name, value


@attrs.frozen
class AgentSettings:
    """Where the agent listens and which virtual devices it has besides PortAudio's."""

    host: str = "127.0.0.1"
    port: int = 9555
    secret: str | None = None
    default_input: str | None = None
    default_output: str = "default"
    tones: Sequence[str] = ()
    """``NAME=HZ[+HZ...]``: input ``tone:NAME``."""
    file_inputs: Sequence[str] = ()
    """``NAME=PATH``: input ``file:NAME`` playing PATH in a loop."""
    file_outputs: Sequence[str] = ()
    """``NAME=PATH``: output ``file:NAME`` recording WAV to PATH."""


def build_agent(settings: AgentSettings) -> MediaAgent:
    """A (not yet started) agent with the declared devices; ValueError for a bad declaration."""
    plugins = SoftphonePluginManager()
    for spec in settings.tones:
        name, freqs = parse_declaration(spec)
        try:
            frequencies = [float(f) for f in freqs.split("+")]
        except ValueError as exc:
            raise ValueError(f"bad tone frequencies in {spec!r}") from exc
        plugins.tone.add_tone(name, frequencies)
    for spec in settings.file_inputs:
        name, path = parse_declaration(spec)
        plugins.file.add_input(name, path, loop=True)
    for spec in settings.file_outputs:
        name, path = parse_declaration(spec)
        plugins.file.add_output(name, path)
    return MediaAgent(
        plugins,
        host=settings.host,
        port=settings.port,
        secret=settings.secret,
        default_input=settings.default_input,
        default_output=settings.default_output,
    )


async def serve_forever(
    settings: AgentSettings, ready: Callable[[MediaAgent], None] | None = None
) -> None:
    """Start the agent, call ``ready(agent)``, serve until cancelled, then close all media."""
    agent = build_agent(settings)
    await agent.start()
    try:
        if ready is not None:
            ready(agent)
        await asyncio.Event().wait()
    finally:
        await agent.stop()
