"""Recording bot: answers calls and records what each caller says to a WAV file.

The bot registers as ``recorder``, accepts every ``incoming`` call and, once the call
is open, adds a ``FileSink`` to the call's remote stream (``call.get_remote_stream()
.add_sink``), so everything the caller says lands in ``--out-dir/<CallSid>.wav``
(48 kHz mono); the file is closed when the call ends. The bot itself sends silence.
Run alone, the example also calls the bot from a second Device that plays a 1 kHz
tone (or ``--play FILE``) for ``--seconds`` and hangs up, then reads the recording
back and checks that it holds the tone. With ``--gateway`` it only runs the bot, for
``--calls`` calls (0: until Ctrl-C).

    python examples/recording_bot.py --out-dir recordings
    python examples/recording_bot.py --gateway wss://127.0.0.1:9443 \\
        --token "$(softphone token --identity recorder)" --out-dir recordings --calls 0
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import Setup, add_gateway_arguments, gateway_setup

from softphone import AudioSource, Call, Device, FileSink, FileSource, ToneSource
from softphone.audio_backends.analysis import dominant_frequency, rms_dbfs

TONE_HZ = 1000.0


class RecordingBot:
    """Records each call on ``device`` into ``out_dir``; ``done`` after ``calls`` calls."""

    def __init__(self, device: Device, out_dir: Path, calls: int) -> None:
        self.out_dir = out_dir
        self.calls_left = calls
        self.recordings: list[Path] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        device.on("incoming", self.on_incoming)

    def on_incoming(self, call: Call) -> None:
        print(f"bot     incoming call from {call.parameters.get('From')}", flush=True)
        call.on("accept", self.start_recording)
        call.accept()

    def start_recording(self, call: Call) -> None:
        path = self.out_dir / f"{call.call_sid}.wav"
        sink = FileSink(path)
        remote = call.get_remote_stream()
        if remote is not None:
            remote.add_sink(sink)
        print(f"bot     recording {call.call_sid} to {path}", flush=True)

        def stop_recording(_: Call) -> None:
            sink.close()
            seconds = sink.samples_written / 48_000
            print(f"bot     call ended; saved {seconds:.1f} s to {path}", flush=True)
            self.recordings.append(path)
            self.calls_left -= 1
            if self.calls_left == 0 and not self.done.done():
                self.done.set_result(None)

        call.on("disconnect", stop_recording)


async def call_the_bot(setup: Setup, source: AudioSource, seconds: float) -> None:
    """The demo caller: call the bot, talk for ``seconds``, hang up."""
    async with Device(setup.token("caller"), setup.device_options(file_input_stream=source)) as dev:
        call = await dev.connect(params={"To": "client:recorder"})
        await call.wait_for("accept", timeout=20)
        print(f"caller  connected; talking for {seconds:g} s", flush=True)
        await asyncio.sleep(seconds)
        call.disconnect()


def check_recording(path: Path, expect_hz: float | None) -> bool:
    """Read ``path`` back; with ``expect_hz``, True when that tone dominates it."""
    with FileSource(path) as recording:
        blocks = []
        while not recording.finished:
            blocks.append(recording.read(4800))
    pcm = np.concatenate(blocks)
    hz = dominant_frequency(pcm)
    print(f"check   {path.name}: {len(pcm) / 48_000:.1f} s, {rms_dbfs(pcm):.1f} dBFS, {hz:.1f} Hz")
    return expect_hz is None or abs(hz - expect_hz) < 5


async def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="recordings-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    async with gateway_setup(args) as setup:
        calls = args.calls if args.calls is not None else (1 if setup.embedded else 0)
        async with Device(setup.token("recorder"), setup.device_options()) as device:
            bot = RecordingBot(device, out_dir, calls)
            await device.register()
            print(f"bot     registered as {device.identity}; recording to {out_dir}", flush=True)
            if setup.embedded:
                source = FileSource(args.play) if args.play else ToneSource([TONE_HZ])
                await call_the_bot(setup, source, args.seconds)
            await asyncio.wait_for(bot.done, None if not setup.embedded else 10)
    if not setup.embedded:
        return 0
    ok = check_recording(bot.recordings[0], None if args.play else TONE_HZ)
    print("result  " + ("OK" if ok else "FAILED: the recording does not hold the tone"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", help="where recordings go (default: a new temp folder)")
    parser.add_argument("--calls", type=int, help="calls to record before exiting (0: forever)")
    parser.add_argument("--play", help="what the demo caller says (default: a 1 kHz tone)")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the caller talks")
    add_gateway_arguments(parser)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
