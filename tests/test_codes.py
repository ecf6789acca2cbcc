"""softphone.signaling.codes: one home for every error code, agreeing with the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from softphone.core.errors import ERRORS_BY_CODE
from softphone.signaling import codes

pytestmark = pytest.mark.pure

PACKAGE = Path(codes.__file__).resolve().parent.parent


def _constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(codes).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
    }


def test_every_catalogue_class_uses_the_code_of_its_constant() -> None:
    sdk_codes = {
        name: value for name, value in _constants().items() if not name.startswith("REST_")
    }
    assert sorted(sdk_codes.values()) == sorted(ERRORS_BY_CODE)  # one constant per class
    assert ERRORS_BY_CODE[codes.TOKEN_EXPIRED].__name__ == "JWTTokenExpiredError"
    assert ERRORS_BY_CODE[codes.MEDIA_CONNECTION_FAILED].__name__ == "MediaConnectionError"
    assert ERRORS_BY_CODE[codes.CONNECTION_ERROR].__name__ == "GeneralConnectionError"


def test_the_wire_numbers_are_the_js_sdks() -> None:
    assert (codes.APPLICATION_NOT_FOUND, codes.MALFORMED_REQUEST) == (31001, 31100)
    assert (codes.AUTHORIZATION_ERROR, codes.TOKEN_EXPIRED) == (31201, 31205)
    assert (codes.RATE_EXCEEDED, codes.TEMPORARILY_UNAVAILABLE) == (31206, 31480)
    assert (codes.DECLINE, codes.MEDIA_CONNECTION_FAILED) == (31603, 53405)
    assert (codes.REST_AUTHENTICATE, codes.REST_NOT_FOUND) == (20003, 20404)


def test_each_number_has_one_name() -> None:
    values = list(_constants().values())
    assert len(values) == len(set(values))


def test_no_other_module_defines_a_code() -> None:
    """The six modules that each had their own copies now import them from codes.py."""
    definition = re.compile(r"^[A-Z_]+(?:: [A-Za-z\[\]]+)? = (?:3\d{4}|5\d{4}|2\d{4})$", re.M)
    offenders = [
        f"{path.relative_to(PACKAGE)}: {match.group(0)}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "codes.py"
        for match in definition.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
