"""What every ``softphone`` sub-command shares: logging set-up and the state folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

STATE_DIR = Path(os.environ.get("SOFTPHONE_HOME", Path.home() / ".softphone"))
"""Where generated certificates live (``$SOFTPHONE_HOME``, default ``~/.softphone``)."""


class CliError(Exception):
    """A problem to report in one line (exit status 2), never as a traceback."""


def configure_logging(level: str) -> None:
    """Log to stderr at the JS ``logLevel`` named ``level``."""
    from softphone.core.log import to_logging_level

    logging.basicConfig(
        level=to_logging_level(level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    """The ``--log-level`` option, with the JS logLevel names."""
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["trace", "debug", "info", "warn", "error", "silent"],
        help=f"how much to log (JS logLevel names; default {default})",
    )
