"""``python -m benchmarks``: the media engine's figures, ours next to aiortc's own path.

Everything runs on 127.0.0.1: a gateway in its own process, devices in this
one (setup, quality) or in two load processes (CPU). Sections:

* ``setup``: connect() to accept, median of 20 calls;
* ``quality``: PESQ-WB (Opus) and PESQ-NB (PCMU) of espeak-ng speech at 0, 1,
  3, 5 % random loss and a 4-packet burst, with the added mouth-to-ear delay
  before the loss and 1 s after it;
* ``cpu``: gateway CPU seconds per bridged call-second at 1, 10 and 50 calls
  (forwarding), plus Opus <-> PCMU transcoding;
* ``capacity``: the most concurrent bridged calls one gateway process keeps
  in real time (bounded by what two cores can drive);
* ``abuse``: what hostile or careless clients cost everybody else: heartbeat
  silence under a non-reading client, memory under huge ``dtmf`` frames, how
  media-less calls end, connect latency during a bad-frame flood;
* ``voice``: WebRTC voice processing on the capture path: ERLE on a simulated
  echo path and through a PulseAudio speaker-to-microphone loop, near-end
  PESQ in double talk, noise suppression SNR gain, CPU per call-second;
* ``turn``: through a real coturn (``turnserver`` from apt): call setup with
  a reachable TURN server (UDP, TCP, TLS) and an unreachable one, with and
  without the ICE gathering bound, and recovery after coturn lost every
  allocation (ICE restart).
* ``scale`` (needs ``redis-server``): ``softphone gateway`` processes sharing
  Redis: 10,000 registered idle devices over 2 gateways (rate, memory per
  device, Redis memory), calls set up from one gateway to another, bridged
  calls kept in real time with ``--workers 1`` and ``--workers 2``.

``--quick`` runs a subset in about a minute; ``--sections`` picks sections.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path as FsPath

from benchmarks import (
    abuse,
    apps,
    call_store,
    cpu,
    insights,
    monitor,
    quality,
    scale,
    turn,
    voice,
)
from benchmarks.harness import Path
from benchmarks.speech import speech_clip
from softphone.media.aiortc_hooks import use_host_addresses

SECTIONS = (
    "setup",
    "quality",
    "cpu",
    "capacity",
    "abuse",
    "turn",
    "insights",
    "monitor",
    "call_store",
    "apps",
    "voice",
    "scale",
)
TARGETS = {
    "pesq_opus": 4.4,
    "pesq_pcmu": 3.95,
    "delay_s": 0.070,
    "forward_cpu": 0.02,
}


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float | None) -> str:
    return "   n/a" if seconds is None else f"{seconds * 1000:6.1f}"


def report_line(line: str) -> None:
    """One line of the report on stdout, at once (a long section shows its tables as it goes)."""
    print(line, flush=True)


def table(title: str, header: str, rows: Iterable[str]) -> None:
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for row in rows:
        print(row)


async def section_setup(paths: list[Path], count: int) -> None:
    rows = []
    for path in paths:
        log(f"setup: {count} calls, {path} path")
        times = await quality.run_setup(path, count)
        rows.append(
            f"{path:8} {count:5d} {ms(statistics.median(times))} {ms(min(times))} {ms(max(times))}"
        )
    table(
        "Call setup, Device -> gateway -> Device (connect() to accept), ms",
        "path     calls median    min    max",
        rows,
    )


async def section_quality(
    paths: list[Path], codecs: list[str], conditions: tuple[quality.Condition, ...]
) -> None:
    clip = speech_clip()
    log(f"quality: espeak-ng clip of {len(clip) / 48000:.1f} s")
    results: list[quality.QualityResult] = []
    for path in paths:
        for codec in codecs:
            log(f"quality: {codec}, {path} path, {len(conditions)} calls at once")
            results += await quality.run_quality(path, codec, clip, conditions)
    rows = []
    for r in results:
        metric = "PESQ-WB" if r.codec == "opus" else "PESQ-NB"
        target = TARGETS["pesq_opus" if r.codec == "opus" else "pesq_pcmu"]
        mark = " *" if r.condition == "0 %" and r.pesq >= target else ""
        change = (
            f"{(r.delay_after - r.delay_before) * 1000:+7.1f}"
            if r.delay_after is not None and r.delay_before is not None
            else "    n/a"
        )
        rows.append(
            f"{r.path:8} {r.codec:5} {r.condition:8} {metric} {r.pesq:5.3f}{mark:2} "
            f"{ms(r.delay_before)}  {ms(r.delay_after)} {change}  {r.dropped:4d}"
        )
    table(
        "Speech quality and added mouth-to-ear delay (caller -> callee)\n"
        "delay before: before any loss; after: 1 s after the first lost packet "
        f"(targets: PESQ-WB >= {TARGETS['pesq_opus']}, PESQ-NB >= {TARGETS['pesq_pcmu']} "
        f"at 0 %, * = met; delay <= {TARGETS['delay_s'] * 1000:.0f} ms, back to "
        "baseline within 1 s)",
        "path     codec loss     metric  score   before    after change  lost",
        rows,
    )


def _cpu_row(r: cpu.CpuResult) -> str:
    return (
        f"{r.path:8} {r.codec:12} {r.calls:5d} {r.cpu_per_call_second:9.4f} "
        f"{r.cpu_per_full_call_second:9.4f} {r.net_cpu_per_call_second:9.4f} "
        f"{r.gateway_cores:6.2f} {r.delivery * 100:7.1f} "
        f"{ms(r.gateway_lag_p99)} {'yes' if r.real_time else 'no':>4}"
    )


CPU_HEADER = "path     codec        calls  CPU/call CPU/full  net/call  cores deliv.% lagp99  RT"


async def section_cpu(
    counts: list[int], baseline_counts: list[int], transcode_counts: list[int]
) -> None:
    plan: list[tuple[Path, int, str | None]] = [("ours", n, None) for n in counts]
    plan += [("ours", n, "pcmu") for n in transcode_counts]
    plan += [("aiortc", n, None) for n in baseline_counts]
    results = []
    for path, calls, callee_codec in plan:
        what = "transcoding" if callee_codec else "same codec"
        log(f"cpu: {calls} calls, {path} path, {what}")
        results.append(await cpu.measure(path, calls, callee_codec=callee_codec))
    table(
        "Gateway CPU seconds per bridged call-second (gateway process only; endpoints elsewhere)\n"
        "CPU/call: per call x wall second; CPU/full: per 100 packets/s actually bridged; "
        "net/call: without the idle gateway's own share\n"
        f"target forwarding <= {TARGETS['forward_cpu']}",
        CPU_HEADER,
        (_cpu_row(r) for r in results),
    )


async def section_capacity(start: int, step: int, limit: int) -> None:
    def progress(result: cpu.CpuResult) -> None:
        state = "real time" if result.real_time else "NOT real time"
        log(f"capacity: {result.calls} calls: {state} ({result.gateway_cores:.2f} cores)")

    log(f"capacity: from {start} calls in steps of {step} (up to {limit})")
    best, endpoints_limited, results = await cpu.capacity("ours", start, step, limit, progress)
    table("Capacity sweep (ours, Opus forwarding)", CPU_HEADER, (_cpu_row(r) for r in results))
    limit_note = (
        "the gateway still had CPU to spare: the load endpoints on the same 2 cores ran out "
        "first, so this is a lower bound"
        if endpoints_limited
        else "the gateway process ran out of CPU"
    )
    print(f"Largest number of bridged calls kept in real time: {best} ({limit_note})")


async def section_abuse(quick: bool) -> None:
    log("abuse: each scenario against its own gateway process")
    with tempfile.TemporaryDirectory(prefix="softphone-abuse-") as logs:
        lines = await abuse.run(FsPath(logs), quick)
    print("\nGateway under abuse (its defaults unless said; the gateway in its own process)")
    for line in lines:
        print(line)


async def section_turn(quick: bool) -> None:
    log("turn: coturn on its own loopback address, a gateway process, two devices")
    setups, recoveries, restarts = await turn.run(quick)
    table(
        "Call setup through TURN, connect() to accept / to the first audio heard, ms (median,\n"
        "min-max); gathering bound: aioice's own 5 s (before) or ours",
        "scenario                 bound       accept (min-max)          first audio (min-max)",
        (
            f"{r.scenario:24} {r.bound:10} {ms(statistics.median(r.accept))} "
            f"({ms(min(r.accept))}-{ms(max(r.accept))})  {ms(statistics.median(r.first_audio))} "
            f"({ms(min(r.first_audio))}-{ms(max(r.first_audio))})"
            for r in setups
        ),
    )
    table(
        "Recovery after coturn was killed and restarted mid-call (relay-only caller), s from the "
        "kill",
        "TURN  reconnecting  reconnected  audio back",
        (
            f"{r.transport:5} {r.reconnecting:12.2f} {r.reconnected:12.2f} {r.audio_back:11.2f}"
            for r in recoveries
        ),
    )
    print(
        f"ICE restart over a live TURN/UDP path, restart offer to new path in use: median "
        f"{ms(statistics.median(restarts))} ms (min {ms(min(restarts))}, max "
        f"{ms(max(restarts))}, {len(restarts)} restarts)"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="a subset in about a minute")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip aiortc's own path")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    paths: list[Path] = ["ours"] if args.no_baseline else ["ours", "aiortc"]
    use_host_addresses(["127.0.0.1"])
    started = time.monotonic()
    print(f"softphone media benchmarks ({'quick' if args.quick else 'full'}) on 127.0.0.1")
    if "setup" in sections:
        await section_setup(paths, 5 if args.quick else 20)
    if "quality" in sections:
        conditions = (
            (quality.CONDITIONS[0], quality.CONDITIONS[2], quality.CONDITIONS[4])
            if args.quick
            else quality.CONDITIONS
        )
        await section_quality(paths, ["opus", "pcmu"], conditions)
    if "cpu" in sections:
        await section_cpu(
            [1, 10] if args.quick else [1, 10, 50],
            [] if args.no_baseline else ([1] if args.quick else [1, 10]),
            [1] if args.quick else [1, 10],
        )
    if "capacity" in sections and not args.quick:
        await section_capacity(start=40, step=20, limit=200)
    if "abuse" in sections:
        await section_abuse(args.quick)
    if "turn" in sections:
        await section_turn(args.quick)
    if "monitor" in sections:
        log("== monitor: injected loss/delay vs samples and warnings; monitor CPU ==")
        for line in await monitor.run(args.quick, progress=log):
            print(line, flush=True)
    if "call_store" in sections:
        log("== call_store: the durable call store's operation times ==")
        for line in await call_store.run(2000 if args.quick else 10_000):
            print(line, flush=True)
    if "insights" in sections:
        log("== insights: publishing cost, gateway store throughput and memory ==")
        for line in await insights.run(args.quick, progress=log):
            print(line, flush=True)
    if "apps" in sections:
        log("== apps: TwiML applications (webhook, Say start, Dial ring latency) ==")
        for line in await apps.run(5 if args.quick else 20):
            print(line, flush=True)
    if "voice" in sections:
        log("== voice: echo cancellation, double talk, noise suppression, CPU; PulseAudio loop ==")
        for line in await voice.run(args.quick, progress=log):
            print(line, flush=True)
    if "scale" in sections:
        log("== scale: gateways on Redis: idle devices, calls across gateways, --workers ==")
        await scale.run("quick" if args.quick else "full", progress=log, emit=report_line)
    log(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
