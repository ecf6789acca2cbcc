"""Answer bot: a Device that picks up every call, plays a greeting and hangs up.

The bot registers as ``bot``, accepts each ``incoming`` call, plays an audio file to
the caller (``--greeting``, any format FFmpeg reads; by default a two-note chime it
writes itself) and ends the call when the file has played. Each call gets its own
``FileSource`` from the ``get_user_media`` option, so the greeting always starts at
the beginning. Run alone, the example also places one call to the bot from a second
Device and checks that the caller heard both notes of the chime; with ``--gateway``
it only runs the bot, for ``--calls`` calls (0: until Ctrl-C).

    python examples/answer_bot.py
    python examples/answer_bot.py --gateway wss://127.0.0.1:9443 \\
        --token "$(softphone token --identity bot)" --cert ~/.softphone/gateway-cert.pem
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import Setup, add_gateway_arguments, gateway_setup

from softphone import Call, Device, FileSink, FileSource, MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone

CHIME = ((660.0, 0.8), (880.0, 0.8))
"""The default greeting: (frequency in Hz, seconds) per note."""


def write_chime(path: Path) -> Path:
    """Write the default greeting, one tone after the other, as a WAV file."""
    with FileSink(path) as sink:
        for hz, seconds in CHIME:
            sink.write(ToneSource([hz], duration_s=seconds).read(int(48_000 * seconds)))
    return path


class AnswerBot:
    """Answers every call with the greeting; ``done`` resolves after ``calls`` calls."""

    def __init__(self, device: Device, greeting: Path, calls: int) -> None:
        self.device = device
        self.greeting = greeting
        self.calls_left = calls
        self.playing: FileSource | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        device.on("incoming", self.on_incoming)

    def open_greeting(self, constraints: dict[str, Any]) -> FileSource:
        """The ``get_user_media`` option: a fresh source for each call (the call closes it)."""
        self.playing = FileSource(self.greeting)
        return self.playing

    def on_incoming(self, call: Call) -> None:
        print(f"bot     incoming call from {call.parameters.get('From')}", flush=True)
        call.on("accept", self.on_accept)
        call.on("disconnect", self.on_end)
        call.accept()

    async def on_accept(self, call: Call) -> None:
        print(f"bot     answered {call.call_sid} ({call.codec}); playing the greeting", flush=True)
        source = self.playing
        while call.status() == "open" and source is not None and not source.finished:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # let the last packets reach the caller
        call.disconnect()

    def on_end(self, call: Call) -> None:
        print(f"bot     call {call.call_sid} ended", flush=True)
        self.calls_left -= 1
        if self.calls_left == 0 and not self.done.done():
            self.done.set_result(None)


async def call_the_bot(setup: Setup) -> bool:
    """The demo caller: call the bot, record what it says, check both notes arrived."""
    heard = MemorySink()
    async with Device(setup.token("caller"), setup.device_options()) as caller:
        call = await caller.connect(params={"To": "client:bot"})
        call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
        await call.wait_for("disconnect", timeout=30)
    pcm = heard.pcm()
    found = []
    for hz, seconds in CHIME:
        window = int(48_000 * seconds / 2)
        found.append(
            any(
                detect_tone(pcm[start : start + window], hz)
                for start in range(0, max(1, len(pcm) - window), window // 2)
            )
        )
    notes = ", ".join(
        f"{hz:g} Hz {'yes' if ok else 'NO'}" for (hz, _), ok in zip(CHIME, found, strict=True)
    )
    print(f"caller  heard {len(pcm) / 48_000:.1f} s of greeting: {notes}", flush=True)
    return all(found)


async def run(args: argparse.Namespace) -> int:
    greeting = Path(args.greeting) if args.greeting else None
    if greeting is None:
        greeting = write_chime(Path(tempfile.mkdtemp(prefix="answer-bot-")) / "chime.wav")
    async with gateway_setup(args) as setup:
        calls = args.calls if args.calls is not None else (1 if setup.embedded else 0)
        bot_device = Device(setup.token("bot"), setup.device_options())
        bot = AnswerBot(bot_device, greeting, calls)
        bot_device.update_options({"get_user_media": bot.open_greeting})
        async with bot_device:
            await bot_device.register()
            print(f"bot     registered as {bot_device.identity}; greeting {greeting}", flush=True)
            if not setup.embedded:
                await bot.done
                return 0
            heard_greeting = await call_the_bot(setup)
            await asyncio.wait_for(bot.done, 10)
    print("result  " + ("OK" if heard_greeting else "FAILED: the caller missed the greeting"))
    return 0 if heard_greeting else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--greeting", help="audio file to play (default: a two-note chime)")
    parser.add_argument("--calls", type=int, help="calls to answer before exiting (0: forever)")
    add_gateway_arguments(parser)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
