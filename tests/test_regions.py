"""Tests for softphone.signaling.regions: edge/region tables and signaling URLs."""

from __future__ import annotations

import pytest

from softphone.signaling.params import UNDEFINED
from softphone.signaling.regions import (
    DEFAULT_EDGE,
    INTERCONNECT_EDGES,
    PUBLIC_EDGES,
    REGION_SHORTCODES,
    REGION_TO_EDGE,
    Edge,
    Region,
    chunder_host,
    edge_from_connected,
    insights_host,
    preferred_signaling_url,
    region_code_from_long_name,
    signaling_hosts,
    signaling_url,
    signaling_urls,
)

pytestmark = pytest.mark.pure

LONG_NAMES = {
    "ASIAPAC_SINGAPORE": "sg1",
    "ASIAPAC_SYDNEY": "au1",
    "ASIAPAC_TOKYO": "jp1",
    "EU_FRANKFURT": "de1",
    "EU_IRELAND": "ie1",
    "SOUTH_AMERICA_SAO_PAULO": "br1",
    "US_EAST_VIRGINIA": "us1",
    "US_WEST_OREGON": "us2",
}

CODE_TO_EDGE = {
    "au1": "sydney",
    "br1": "sao-paulo",
    "ie1": "dublin",
    "de1": "frankfurt",
    "jp1": "tokyo",
    "sg1": "singapore",
    "us1": "ashburn",
    "us2": "umatilla",
    "gll": "roaming",
    "us1-ix": "ashburn-ix",
    "us2-ix": "san-jose-ix",
    "ie1-ix": "london-ix",
    "de1-ix": "frankfurt-ix",
    "sg1-ix": "singapore-ix",
    "au1-ix": "sydney-ix",
    "jp1-ix": "tokyo-ix",
    "us1-tnx": "ashburn-ix",
    "us2-tnx": "ashburn-ix",
    "ie1-tnx": "london-ix",
    "sg1-tnx": "singapore-ix",
}

ALL_EDGES = [
    "sydney",
    "sao-paulo",
    "dublin",
    "frankfurt",
    "tokyo",
    "singapore",
    "ashburn",
    "umatilla",
    "roaming",
    "ashburn-ix",
    "san-jose-ix",
    "london-ix",
    "frankfurt-ix",
    "singapore-ix",
    "sydney-ix",
    "tokyo-ix",
]


# --- tables ----------------------------------------------------------------------


def test_edge_enum_lists_every_edge_in_order() -> None:
    assert [e.value for e in Edge] == ALL_EDGES
    assert [e.value for e in PUBLIC_EDGES] == ALL_EDGES[:9]
    assert [e.value for e in INTERCONNECT_EDGES] == ALL_EDGES[9:]
    assert DEFAULT_EDGE.value == "roaming"


def test_region_enum_lists_every_code() -> None:
    assert sorted(r.value for r in Region) == sorted(CODE_TO_EDGE)
    assert len(Region) == 20


def test_long_name_table_is_exact() -> None:
    assert {k: v.value for k, v in REGION_SHORTCODES.items()} == LONG_NAMES


def test_region_to_edge_table_is_exact() -> None:
    assert {k.value: v.value for k, v in REGION_TO_EDGE.items()} == CODE_TO_EDGE


@pytest.mark.parametrize(("long_name", "code"), sorted(LONG_NAMES.items()))
def test_chk_253_every_long_name_maps_to_its_code(long_name: str, code: str) -> None:
    assert region_code_from_long_name(long_name) == code


@pytest.mark.parametrize("name", ["FOO_BAR", "", "us1", "us_east_virginia", None, 3])
def test_chk_253_unknown_long_name_gives_none(name: object) -> None:
    assert region_code_from_long_name(name) is None


# --- signaling hosts and URLs (checklist 19-21, 251-254) ---------------------------


def test_chk_019_default_is_roaming() -> None:
    assert signaling_urls(signaling_hosts()) == ["wss://voice-js.roaming.twilio.com/signal"]


def test_chk_020_chunderw_string_and_list() -> None:
    assert signaling_urls(signaling_hosts(chunderw="foo")) == ["wss://foo/signal"]
    assert signaling_urls(signaling_hosts(chunderw=["foo", "bar"])) == [
        "wss://foo/signal",
        "wss://bar/signal",
    ]


def test_chk_020_chunderw_overrides_edge() -> None:
    assert signaling_hosts(edge="sydney", chunderw="localhost:8443") == ["localhost:8443"]
    assert signaling_urls(signaling_hosts(edge=["a", "b"], chunderw=("x",))) == ["wss://x/signal"]


def test_chunderw_of_another_type_is_ignored_like_js() -> None:
    assert signaling_hosts(edge="tokyo", chunderw=5) == [  # type: ignore[arg-type]
        "voice-js.tokyo.twilio.com"
    ]


def test_chunderw_list_with_non_strings_raises() -> None:
    with pytest.raises(ValueError):
        signaling_hosts(chunderw=["ok", 3])  # type: ignore[list-item]


def test_chk_021_edge_string_and_list() -> None:
    assert signaling_urls(signaling_hosts(edge="singapore")) == [
        "wss://voice-js.singapore.twilio.com/signal"
    ]
    assert signaling_urls(signaling_hosts(edge=["singapore", "sydney"])) == [
        "wss://voice-js.singapore.twilio.com/signal",
        "wss://voice-js.sydney.twilio.com/signal",
    ]


@pytest.mark.parametrize("edge", [{"a": 1}, {}, 5, 1.5, True, object(), ["ok", 3]])
def test_chk_251_edge_of_wrong_type_raises(edge: object) -> None:
    with pytest.raises(ValueError):
        signaling_hosts(edge=edge)  # type: ignore[arg-type]


@pytest.mark.parametrize("edge", [None, "", 0, False, UNDEFINED])
def test_chk_252_falsy_edge_gives_roaming(edge: object) -> None:
    assert signaling_hosts(edge=edge) == ["voice-js.roaming.twilio.com"]  # type: ignore[arg-type]


@pytest.mark.parametrize("edge", [*ALL_EDGES, "foo", "not-an-edge"])
def test_chk_252_every_edge_and_unknown_string(edge: str) -> None:
    assert signaling_hosts(edge=edge) == [f"voice-js.{edge}.twilio.com"]
    assert chunder_host(edge) == f"voice-js.{edge}.twilio.com"


def test_chk_252_arrays_map_element_wise_and_roaming_accepted() -> None:
    assert signaling_hosts(edge=ALL_EDGES) == [f"voice-js.{e}.twilio.com" for e in ALL_EDGES]
    assert signaling_hosts(edge="roaming") == ["voice-js.roaming.twilio.com"]
    assert signaling_hosts(edge=["roaming"]) == ["voice-js.roaming.twilio.com"]
    assert signaling_hosts(edge=[Edge.DUBLIN, "foo"]) == [
        "voice-js.dublin.twilio.com",
        "voice-js.foo.twilio.com",
    ]


def test_empty_edge_list_gives_no_hosts_like_js() -> None:
    # JS: [] is truthy and an array, so it maps to [].
    assert signaling_hosts(edge=[]) == []


def test_chk_254_host_becomes_wss_signal_url() -> None:
    assert signaling_url("foobar") == "wss://foobar/signal"
    assert signaling_urls(["foobar"]) == ["wss://foobar/signal"]
    assert signaling_urls("foobar") == ["wss://foobar/signal"]


def test_host_with_port_and_path_prefix() -> None:
    assert signaling_url("localhost:8443") == "wss://localhost:8443/signal"
    assert signaling_url("127.0.0.1:8443/incoming") == "wss://127.0.0.1:8443/incoming/signal"
    assert signaling_url("127.0.0.1:8443/incoming/") == "wss://127.0.0.1:8443/incoming/signal"


def test_host_keeps_its_own_ws_or_wss_scheme() -> None:
    assert signaling_url("ws://127.0.0.1:8080") == "ws://127.0.0.1:8080/signal"
    assert signaling_url("ws://127.0.0.1:8080/p") == "ws://127.0.0.1:8080/p/signal"
    assert signaling_url("wss://gw.example", scheme="ws") == "wss://gw.example/signal"
    assert signaling_urls(["ws://a", "b", "wss://c"], scheme="ws") == [
        "ws://a/signal",
        "ws://b/signal",
        "wss://c/signal",
    ]


def test_scheme_parameter_applies_to_bare_hosts() -> None:
    assert signaling_url("foo", scheme="ws") == "ws://foo/signal"


# --- connected handling (§2.5, checklist 26-33) -------------------------------------


@pytest.mark.parametrize(("long_name", "code"), sorted(LONG_NAMES.items()))
def test_chk_027_edge_from_every_long_region_name(long_name: str, code: str) -> None:
    assert edge_from_connected(None, long_name) == CODE_TO_EDGE[code]


def test_edge_from_connected_prefers_payload_edge() -> None:
    assert edge_from_connected("dublin", "US_EAST_VIRGINIA") == "dublin"
    assert edge_from_connected(["dublin", "frankfurt"], "US_EAST_VIRGINIA") == "dublin"


def test_edge_from_connected_falsy_edge_falls_through() -> None:
    assert edge_from_connected("", "EU_IRELAND") == "dublin"
    assert edge_from_connected([], "EU_IRELAND") == "dublin"
    assert edge_from_connected(None, "EU_IRELAND") == "dublin"


def test_chk_028_unmapped_region_is_kept_raw() -> None:
    assert edge_from_connected(None, "FOO_BAR") == "FOO_BAR"
    assert edge_from_connected(None, "") == ""
    # a short code is not a long name, so it is stored raw (not mapped to ashburn)
    assert edge_from_connected(None, "us1") == "us1"


def test_edge_from_connected_nothing_usable() -> None:
    assert edge_from_connected(None, None) is None
    assert edge_from_connected(5, 7) is None


@pytest.mark.parametrize("home", [None, "", 0, False, UNDEFINED])
def test_chk_250_falsy_home_gives_default_insights_host(home: object) -> None:
    assert insights_host(home) == "eventgw.twilio.com"


@pytest.mark.parametrize("home", [*CODE_TO_EDGE, "foo"])
def test_chk_250_chk_029_home_gives_regional_insights_host(home: str) -> None:
    assert insights_host(home) == f"eventgw.{home}.twilio.com"


def test_chk_031_preferred_url_from_edge() -> None:
    assert preferred_signaling_url(None, "dublin") == "wss://voice-js.dublin.twilio.com/signal"
    assert (
        preferred_signaling_url(None, ["dublin", "frankfurt"])
        == "wss://voice-js.dublin.twilio.com/signal"
    )


def test_preferred_url_without_edge_is_roaming() -> None:
    assert preferred_signaling_url(None, None) == "wss://voice-js.roaming.twilio.com/signal"


def test_chk_032_preferred_url_with_chunderw_ignores_edge() -> None:
    assert preferred_signaling_url("foo", "dublin") == "wss://foo/signal"
    assert preferred_signaling_url(["foo", "bar"], "dublin") == "wss://foo/signal"


def test_preferred_url_scheme_and_own_scheme() -> None:
    assert preferred_signaling_url("127.0.0.1:9", None, scheme="ws") == "ws://127.0.0.1:9/signal"
    assert preferred_signaling_url(["ws://h:1/x"], "dublin") == "ws://h:1/x/signal"


def test_preferred_url_none_for_empty_host_list() -> None:
    assert preferred_signaling_url([], "dublin") is None
