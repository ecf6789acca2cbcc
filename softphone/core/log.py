"""The JS SDK's ``logLevel`` mapped onto the standard :mod:`logging` module.

Every softphone module logs to a child of the ``softphone`` logger; the Device
option ``log_level`` sets that logger's level, exactly as the JS option sets the
SDK's default log level. Names and numbers follow loglevel (the JS library):
trace 0, debug 1, info 2, warn 3, error 4, silent 5; anything else means error.
"""

from __future__ import annotations

import logging

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

SILENT = logging.CRITICAL + 10

ROOT_LOGGER = "softphone"

_BY_NAME = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "silent": SILENT,
}
_BY_NUMBER = dict(enumerate(_BY_NAME.values()))


def to_logging_level(log_level: object) -> int:
    """Translate a JS ``logLevel`` (0-5 or a name, any case) to a :mod:`logging` level."""
    if isinstance(log_level, bool):
        return logging.ERROR
    if isinstance(log_level, int):
        return _BY_NUMBER.get(log_level, logging.ERROR)
    if isinstance(log_level, str):
        return _BY_NAME.get(log_level.strip().lower(), logging.ERROR)
    return logging.ERROR


def apply_log_level(log_level: object) -> int:
    """Set the ``softphone`` logger's level from a JS ``logLevel``; returns the level."""
    level = to_logging_level(log_level)
    logging.getLogger(ROOT_LOGGER).setLevel(level)
    return level
