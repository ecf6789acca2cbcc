"""Helpers for tests that make real calls through the gateway and listen to them."""

from __future__ import annotations

from typing import Any

import numpy as np
from recorders import eventually

from softphone.audio_backends import MemorySink
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.core.call import Call
from softphone.core.device import Device


class Listener:
    """Bob's side: accepts incoming calls and records what bob hears."""

    def __init__(self, device: Device, *, accept: bool = True) -> None:
        self.device = device
        self.calls: list[Call] = []
        self.heard = MemorySink()
        self.auto_accept = accept
        device.on("incoming", self._on_incoming)

    def _on_incoming(self, call: Call) -> None:
        self.calls.append(call)
        call.on("accept", lambda c: c.get_remote_stream().add_sink(self.heard))
        if self.auto_accept:
            call.accept()

    async def wait_call(self, count: int = 1) -> Call:
        await eventually(lambda: len(self.calls) >= count)
        return self.calls[count - 1]

    async def recent(self, seconds: float = 0.5) -> Pcm:
        """The last ``seconds`` bob heard, waiting for fresh audio first."""
        return await recent(self.heard, seconds)


async def recent(sink: MemorySink, seconds: float = 0.5, *, fresh: bool = True) -> Pcm:
    """The last ``seconds`` of ``sink``; with ``fresh``, only audio written from now on."""
    start = sink.samples_written if fresh else 0
    need = int(SAMPLE_RATE * seconds)
    await eventually(lambda: sink.samples_written - start >= need, timeout=15)
    pcm: Pcm = sink.pcm()[-need:]
    return pcm


async def open_call(caller: Device, listener: Listener, **params: Any) -> tuple[Call, Call]:
    """Call bob from ``caller``; return (caller's call, bob's call) once both are open."""
    before = len(listener.calls)
    call = await caller.connect(params={"To": "client:bob", **params})
    await call.wait_for("accept", timeout=15)
    other = await listener.wait_call(before + 1)
    await eventually(lambda: other.status() == "open")
    return call, other


def silent(pcm: Pcm) -> bool:
    """Near-digital silence (codec noise floor included)."""
    return bool(np.max(np.abs(pcm.astype(np.int32))) < 200) if pcm.size else True
