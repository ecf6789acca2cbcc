"""The ``softphone`` command: run a gateway, mint tokens, try a real call.

    softphone demo                      a real call between two devices, end to end
    softphone gateway [--no-tls]        serve /signal for SDKs and browsers
    softphone token --identity alice    print a development access token
    softphone media-agent               own calls' media and audio devices for a remote app

Every sub-command has ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from softphone.version import __version__

log = logging.getLogger("softphone.cli")

DEFAULT_PORT = 9443
STATE_DIR = Path(os.environ.get("SOFTPHONE_HOME", Path.home() / ".softphone"))


def _configure_logging(level: str) -> None:
    from softphone.core.log import to_logging_level

    logging.basicConfig(
        level=to_logging_level(level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["trace", "debug", "info", "warn", "error", "silent"],
        help=f"how much to log (JS logLevel names; default {default})",
    )


# -- gateway --------------------------------------------------------------------------------
def _gateway_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the signaling endpoint /signal (the role Twilio plays)",
        description=(
            "Serve the Twilio-compatible signaling protocol on /signal. Our SDK and the "
            "official JS SDK (with the `chunderw` option pointing here) can register and "
            "call each other through it. TLS is on by default with a self-signed "
            "certificate made on first use; browsers must trust it or ignore errors."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--no-tls", action="store_true", help="serve plain ws:// (SDK tests only)")
    p.add_argument("--cert", help="TLS certificate (PEM); generated when absent")
    p.add_argument("--key", help="TLS private key (PEM); generated when absent")
    p.add_argument("--edge", default="loopback", help="edge name reported in `connected`")
    p.add_argument("--region", default="LOOPBACK", help="region reported in `connected`")
    p.add_argument("--home", default="loopback", help="home reported in `connected`")
    p.add_argument(
        "--config",
        help="accounts JSON file (else SOFTPHONE_API_KEY_* env, else the dev account)",
    )
    p.add_argument(
        "--media-address",
        default=None,
        help="address media legs advertise (default: the --host address)",
    )
    _add_log_level(p)
    p.set_defaults(func=_run_gateway)


def _tls_paths(args: argparse.Namespace) -> tuple[str, str]:
    from softphone.gateway.tls import generate_self_signed

    if args.cert and args.key:
        return args.cert, args.key
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    cert, key = STATE_DIR / "gateway-cert.pem", STATE_DIR / "gateway-key.pem"
    if not cert.exists() or not key.exists():
        print(f"generating a self-signed certificate in {STATE_DIR}", file=sys.stderr)
        generate_self_signed(cert, key, hosts=("localhost", "127.0.0.1", args.host))
    return str(cert), str(key)


def _run_gateway(args: argparse.Namespace) -> int:
    from softphone.gateway.accounts import load
    from softphone.gateway.server import Gateway, GatewayConfig
    from softphone.gateway.tls import server_ssl_context
    from softphone.media.aiortc_hooks import use_host_addresses

    _configure_logging(args.log_level)
    try:
        accounts = load(args.config)
    except ValueError as exc:
        print(f"softphone gateway: {exc}", file=sys.stderr)
        return 2
    ssl_context = None
    if not args.no_tls:
        cert, key = _tls_paths(args)
        ssl_context = server_ssl_context(cert, key)
    media_address = args.media_address or args.host
    if media_address not in ("0.0.0.0", "::"):
        use_host_addresses([media_address])
    config = GatewayConfig(
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        edge=args.edge,
        region=args.region,
        home=args.home,
        media_host=media_address,
    )

    async def serve() -> None:
        gateway = Gateway(accounts, config)
        await gateway.start()
        print(f"softphone gateway {__version__}: {gateway.url} (edge {args.edge})", flush=True)
        print(f"clients use chunderw={gateway.host_port!r}; stop with Ctrl-C", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await gateway.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a server is stopped
    except OSError as exc:
        print(
            f"softphone gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


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
    from softphone.gateway.tokens import mint_token

    try:
        accounts = load(args.config)
    except ValueError as exc:
        print(f"softphone token: {exc}", file=sys.stderr)
        return 2
    key = accounts.default_key()
    account = accounts.account(key.account_sid)
    app = account.applications[0].sid if account and account.applications else None
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
    _add_log_level(p, default="warn")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from softphone.demo import DemoSettings, run_demo

    _configure_logging(args.log_level)
    settings = DemoSettings(
        input_path=args.input,
        output_path=args.output,
        codec=args.codec,
        seconds=args.seconds,
        digits=args.digits,
    )
    return asyncio.run(run_demo(settings))


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
    _add_log_level(p)
    p.set_defaults(func=_run_media_agent)


def _run_media_agent(args: argparse.Namespace) -> int:
    import signal

    from softphone.agent.runner import AgentSettings, build_agent, serve_forever
    from softphone.media.aiortc_hooks import use_host_addresses

    _configure_logging(args.log_level)
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
    _gateway_parser(sub)
    _token_parser(sub)
    _media_agent_parser(sub)
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
