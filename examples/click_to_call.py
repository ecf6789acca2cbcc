"""Click to call: what a "Call" button does, from the click to the hang-up.

One ``device.connect(params={"To": ...})`` places the call; the example follows it
through its events (``ringing``, ``accept``, ``sample``, ``warning``, ``disconnect``,
``error``), sends what ``--play`` holds (an audio file; by default a 440 Hz tone),
records what it hears to ``--record``, hangs up after ``--seconds`` and prints the
call's figures: CallSid, codec, MOS, round-trip time and jitter from the last
``sample``. ``--to echo`` (the default) calls the gateway's echo service, so the
example can check that it heard its own tone come back; ``--to client:NAME`` rings a
registered Device instead.

    python examples/click_to_call.py
    python examples/click_to_call.py --gateway wss://127.0.0.1:9443 \\
        --token "$(softphone token --identity alice)" --to client:bob --record bob.wav
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _common import add_gateway_arguments, gateway_setup

from softphone import (
    AudioSink,
    AudioSource,
    Call,
    Device,
    FileSink,
    FileSource,
    MemorySink,
    RTCSample,
    ToneSource,
    TwilioError,
)
from softphone.audio_backends.analysis import dominant_frequency

TONE_HZ = 440.0


def follow(call: Call, heard: MemorySink, samples: list[RTCSample], record: str | None) -> None:
    """Print the call's events; keep its samples; send what it hears to ``heard``."""
    call.on("ringing", lambda early: print(f"call    ringing (early media: {early})", flush=True))
    call.on("sample", samples.append)
    call.on("warning", lambda name, *_: print(f"call    quality warning: {name}", flush=True))
    call.on("error", lambda error: print(f"call    error {error.code}: {error}", flush=True))
    call.on("disconnect", lambda _: print("call    disconnected", flush=True))
    sinks: list[AudioSink] = [heard]
    if record:
        recording = FileSink(record)
        sinks.append(recording)
        call.on("disconnect", lambda _: recording.close())  # sinks added by the app are its own

    def on_accept(call: Call) -> None:
        print(f"call    answered: {call.call_sid}, codec {call.codec}", flush=True)
        remote = call.get_remote_stream()
        for sink in sinks:
            if remote is not None:
                remote.add_sink(sink)

    call.on("accept", on_accept)


async def run(args: argparse.Namespace) -> int:
    source: AudioSource = FileSource(args.play) if args.play else ToneSource([TONE_HZ])
    heard = MemorySink()
    samples: list[RTCSample] = []
    async with gateway_setup(args) as setup:
        device = Device(setup.token("alice"), setup.device_options(file_input_stream=source))
        device.on("error", lambda error, *_: print(f"device  error: {error}", flush=True))
        async with device:
            try:
                call = await device.connect(params={"To": args.to})  # the click
            except TwilioError as error:
                print(f"result  FAILED: {error}")
                return 1
            print(f"call    dialling {args.to} ({call.outbound_connection_id})", flush=True)
            follow(call, heard, samples, args.record)
            await call.wait_for("accept", timeout=20)
            await asyncio.sleep(args.seconds)
            call.disconnect()  # the hang-up button
    print(f"call    lasted {len(samples)} samples; heard {len(heard.pcm()) / 48_000:.1f} s")
    if samples:
        last = samples[-1]
        mos = f"{last.mos:.2f}" if last.mos is not None else "n/a (no rtt measured yet)"
        rtt = f"{last.rtt:.0f} ms" if last.rtt is not None else "n/a"
        print(
            f"quality last sample: MOS {mos}, rtt {rtt}, jitter {last.jitter:.1f} ms, "
            f"{last.totals.packets_received} packets received, loss {last.packets_lost_fraction}%"
        )
    if args.to != "echo" or args.play:
        print("result  OK")
        return 0
    hz = dominant_frequency(heard.pcm()[-48_000:])
    echoed = abs(hz - TONE_HZ) < 5
    print(f"echo    heard {hz:.1f} Hz back (sent {TONE_HZ:g} Hz)")
    print("result  " + ("OK" if echoed else "FAILED: the echo did not come back"))
    return 0 if echoed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", default="echo", help="whom to call (default: the echo service)")
    parser.add_argument("--play", help="audio file to send (default: a 440 Hz tone)")
    parser.add_argument("--record", help="WAV file to record the far end to")
    parser.add_argument("--seconds", type=float, default=3.0, help="call length once answered")
    add_gateway_arguments(parser)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
