"""The documentation builds without a single warning, and says what the code does.

The build is Sphinx (MyST for the Markdown guides, autodoc for the API reference) with
``-W``: a broken link between pages, a page left out of the table of contents, a
docstring that is not valid reStructuredText or a name autodoc cannot import fails
this test. CI installs the ``docs`` extra; without it the build test is skipped with
the reason. The other tests check the pages against the code: every error code, every
event, nothing pointing outside the repository.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from softphone.core.errors import ERRORS_BY_CODE

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATOR = ("sphinx", "myst_parser", "furo")


def _missing_generator() -> list[str]:
    return [name for name in GENERATOR if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(
    bool(_missing_generator()),
    reason=f"docs generator not installed ({', '.join(_missing_generator())}): "
    "pip install -e '.[docs]'",
)
def test_the_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    out = tmp_path / "site"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*command, "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (out / "api.html").read_text()
    for text in ("allow_incoming_while_busy", "tokenWillExpire", "warning-cleared", "31005"):
        assert text in api, f"the API reference lacks {text!r} (docstrings not rendered?)"
    for page in ("quickstart", "concepts", "events", "porting-from-js", "audio-devices"):
        assert (out / f"{page}.html").exists(), page
    for page in ("tls", "gateway", "plugins-and-media-agent", "errors", "examples"):
        assert (out / f"{page}.html").exists(), page


def test_every_error_code_is_in_the_error_page() -> None:
    text = (DOCS / "errors.md").read_text()
    listed = {int(code) for code in re.findall(r"^\| (\d{5}) \|", text, flags=re.MULTILINE)}
    assert listed == set(ERRORS_BY_CODE)
    for code, cls in ERRORS_BY_CODE.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {code} |"))
        assert f".{cls.name}`" in row, (code, row)  # the JS name, after its namespace


def test_every_event_is_in_the_event_reference() -> None:
    from test_public_api import CALL_EVENTS, DEVICE_EVENTS

    text = (DOCS / "events.md").read_text()
    sections = dict(re.findall(r"^## (\w[^\n]*)\n(.*?)(?=^## |\Z)", text, re.M | re.S))

    def events_in(title: str) -> set[str]:
        return set(re.findall(r"^\| `([\w-]+)` \|", sections[title], flags=re.MULTILINE))

    assert events_in("Device") == set(DEVICE_EVENTS)
    assert events_in("Call") == set(CALL_EVENTS)
    assert events_in("AudioHelper (`device.audio`)") == {"deviceChange", "inputVolume"}
    assert events_in("PreflightTest") == {"connected", "sample", "warning", "completed", "failed"}


def test_the_audio_helper_emits_what_the_reference_lists() -> None:
    """AudioHelper's events are documented from its code: the names it emits."""
    source = (ROOT / "softphone" / "core" / "audio_helper.py").read_text()
    assert set(re.findall(r'self\.emit\("(\w+)"', source)) == {"deviceChange", "inputVolume"}


def test_nothing_points_outside_the_repository() -> None:
    pages = [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text and "/work/shared" not in text, page
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        assert not re.match(r"[a-z]+://", target), f"README links outside: {target}"
        assert (ROOT / target.split("#")[0]).exists(), f"README links to a missing {target}"
