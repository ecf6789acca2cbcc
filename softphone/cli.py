"""The ``softphone`` command: run a gateway, mint tokens, try a real call.

    softphone demo                      a real call between two devices, end to end
    softphone gateway [--no-tls]        serve /signal for SDKs and browsers
    softphone token --identity alice    print a development access token
    softphone preflight                 one echo call: timings, ICE path, audio, call quality
    softphone calls list | show CA…     the gateway's call history
    softphone media-agent               own calls' media and audio devices for a remote app
    softphone phone [--call T|--answer] a terminal softphone (interactive, or one scripted call)

Every sub-command has ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from softphone.cli_calls import add_calls_parser
from softphone.cli_common import add_log_level, configure_logging
from softphone.cli_gateway import add_gateway_parser
from softphone.phone.cli import add_phone_parser
from softphone.version import __version__

log = logging.getLogger("softphone.cli")


# -- token ----------------------------------------------------------------------------------
def _token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "token",
        help="print an access token for the gateway's account",
        description=(
            "Mint an HS256 access token (the same format as Twilio's AccessToken with a "
            "VoiceGrant) with the gateway's API key: the dev account unless --config or "
            "SOFTPHONE_API_KEY_* say otherwise."
        ),
    )
    p.add_argument("--identity", required=True, help="client name (letters, digits, _)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (max 86400)")
    p.add_argument("--config", help="accounts JSON file, as for `softphone gateway`")
    p.set_defaults(func=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    from softphone.gateway.accounts import load
    from softphone.gateway.tokens import identity_problem, mint_token

    try:
        accounts = load(args.config)
    except ValueError as exc:
        print(f"softphone token: {exc}", file=sys.stderr)
        return 2
    problem = identity_problem(args.identity)
    if problem is not None:
        print(f"softphone token: {problem} (got {args.identity!r})", file=sys.stderr)
        return 2
    key = accounts.default_key()
    account = accounts.account(key.account_sid)
    app = account.applications[0].sid if account and account.applications else None
    if app is None:
        print(
            f"softphone token: account {key.account_sid} has no TwiML application: this "
            "token can register and receive calls but not place them",
            file=sys.stderr,
        )
    print(mint_token(key, args.identity, ttl=args.ttl, outgoing_application_sid=app))
    return 0


# -- demo -----------------------------------------------------------------------------------
def _demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="a real call: embedded gateway, two devices, speech in, recording out",
        description=(
            "Start a gateway on 127.0.0.1, register alice and bob, call bob from alice "
            "with speech from a file, record what bob hears, send DTMF, hang up, and "
            "print the events and a report."
        ),
    )
    p.add_argument("--input", help="audio file alice says (default: espeak-ng speech)")
    p.add_argument("--output", default="demo-bob-heard.wav", help="what bob hears (WAV)")
    p.add_argument("--codec", choices=["opus", "pcmu"], default="opus", help="preferred codec")
    p.add_argument("--seconds", type=float, default=6.0, help="how long the call lasts")
    p.add_argument("--digits", default="1234#", help="DTMF alice sends during the call")
    add_log_level(p, default="warn")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from softphone.demo import DemoSettings, run_demo

    configure_logging(args.log_level)
    settings = DemoSettings(
        input_path=args.input,
        output_path=args.output,
        codec=args.codec,
        seconds=args.seconds,
        digits=args.digits,
    )
    return asyncio.run(run_demo(settings))


# -- preflight ------------------------------------------------------------------------------
def _preflight_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preflight",
        help="one echo call: timings, ICE path, audio round trip and call quality",
        description=(
            "Run a PreflightTest: one echo call with a tone, reporting signaling, call and "
            "media setup times, the ICE candidates gathered (host, srflx, relay; which TURN "
            "servers answered), the candidate pair that carried the media, whether the tone "
            "made the round trip, and the call quality measured (band, MOS, jitter, rtt) "
            "with any warnings. A line per sample shows progress. Without --url an embedded "
            "gateway on 127.0.0.1 is used. Exit 0 when audio came back."
        ),
    )
    p.add_argument("--url", help="signaling URL of the gateway (chunderw), with --token")
    p.add_argument("--token", help="access token for --url (see `softphone token`)")
    p.add_argument(
        "--ca-file",
        help="trust this certificate (PEM) for wss:// and turns:// (default: system store "
        "or SSL_CERT_FILE)",
    )
    p.add_argument(
        "--ice-servers",
        metavar="JSON",
        help="iceServers as JSON, or @FILE: a list, or the Tokens.json response of the REST API",
    )
    p.add_argument("--relay", action="store_true", help="relay-only (iceTransportPolicy relay)")
    p.add_argument("--listen", type=float, default=5.0, help="seconds to wait for the echo")
    p.add_argument(
        "--seconds", type=float, default=10.0, help="how long the test call lasts (default 10)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the PreflightTest report as JSON with the JS SDK's keys (progress on stderr)",
    )
    add_log_level(p, default="warn")
    p.set_defaults(func=_run_preflight)


def _run_preflight(args: argparse.Namespace) -> int:
    import ssl

    from softphone.core.rtc_sample import RTCSample
    from softphone.preflight import PreflightSettings, load_ice_servers, run_preflight

    configure_logging(args.log_level)
    if bool(args.url) != bool(args.token):
        print("softphone preflight: give both --url and --token, or neither", file=sys.stderr)
        return 2
    if not 0 < args.seconds <= 3600 or args.listen <= 0:
        print("softphone preflight: --seconds and --listen must be > 0", file=sys.stderr)
        return 2
    try:
        settings = PreflightSettings(
            url=args.url,
            token=args.token,
            ice_servers=load_ice_servers(args.ice_servers) if args.ice_servers else [],
            relay_only=args.relay,
            ssl_context=ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None,
            listen_s=args.listen,
            seconds=args.seconds,
            log_level=args.log_level,
        )
    except (OSError, ValueError) as exc:
        print(f"softphone preflight: {exc}", file=sys.stderr)
        return 2
    progress = sys.stderr if args.json else sys.stdout

    def on_sample(count: int, sample: RTCSample) -> None:
        mos = "-" if sample.mos is None else f"{sample.mos:.2f}"
        print(f"sample {count}: MOS {mos}", file=progress, flush=True)

    report = asyncio.run(run_preflight(settings, on_sample))
    if args.json:
        print(report.to_json(), flush=True)
    else:
        for line in report.lines():
            print(line, flush=True)
    return 0 if report.ok else 1


# -- media agent ----------------------------------------------------------------------------
def _media_agent_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "media-agent",
        help="run calls' media and audio devices here for an app elsewhere (VDI redirection)",
        description=(
            "Serve the media-agent protocol on a WebSocket. An app that registers "
            "softphone.agent.MediaAgentPlugin keeps signaling and has this process run the "
            "peer connections and the audio devices (PortAudio sound cards and the virtual "
            "devices declared below). Prints its URL once listening."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9555, help="port (default 9555; 0 picks one)")
    p.add_argument(
        "--secret",
        default=os.environ.get("SOFTPHONE_AGENT_SECRET"),
        help="shared secret apps must present (default: $SOFTPHONE_AGENT_SECRET, else none)",
    )
    p.add_argument(
        "--media-address",
        default=None,
        help="only gather ICE candidates on this address (e.g. 127.0.0.1 for local tests)",
    )
    p.add_argument("--input", help="default input device id (default: silence)")
    p.add_argument("--output", default="default", help="default output device id")
    p.add_argument(
        "--tone",
        action="append",
        default=[],
        metavar="NAME=HZ[+HZ]",
        help="declare input tone:NAME playing those frequencies (repeatable)",
    )
    p.add_argument(
        "--file-input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="declare input file:NAME looping an audio file (repeatable)",
    )
    p.add_argument(
        "--file-output",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="declare output file:NAME recording WAV (repeatable)",
    )
    add_log_level(p)
    p.set_defaults(func=_run_media_agent)


def _run_media_agent(args: argparse.Namespace) -> int:
    import signal

    from softphone.agent.runner import AgentSettings, build_agent, serve_forever
    from softphone.media.aiortc_hooks import use_host_addresses

    configure_logging(args.log_level)
    settings = AgentSettings(
        host=args.host,
        port=args.port,
        secret=args.secret or None,
        default_input=args.input,
        default_output=args.output,
        tones=tuple(args.tone),
        file_inputs=tuple(args.file_input),
        file_outputs=tuple(args.file_output),
    )
    try:
        build_agent(settings)  # validate the declarations before listening
    except ValueError as exc:
        print(f"softphone media-agent: {exc}", file=sys.stderr)
        return 2
    if args.media_address:
        use_host_addresses([args.media_address])

    def ready(agent: Any) -> None:
        print(f"softphone media-agent {__version__}: {agent.url}", flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await serve_forever(settings, ready)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0  # Ctrl-C is how the agent is stopped
    except OSError as exc:
        print(
            f"softphone media-agent: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``softphone`` argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="softphone",
        description="A Python voice SDK with the Twilio Voice JS SDK API, and its gateway.",
        epilog="New here? Run `softphone demo` for a real call on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"softphone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _demo_parser(sub)
    add_gateway_parser(sub)
    _token_parser(sub)
    add_calls_parser(sub)
    _preflight_parser(sub)
    _media_agent_parser(sub)
    add_phone_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``softphone`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
