"""The REST API's Calls and Recordings, read and changed with the official helper library.

A real gateway on 127.0.0.1 with its REST API and a call store file; real Devices
place echo and client calls; ``twilio.rest.Client`` (its ``api.base_url`` pointed at
the gateway) lists, fetches and ends them. Rows put straight into the store stand
for history the gateway made earlier (paging, date filters) and for recordings.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from calltools import Listener
from recorders import EventLog, eventually
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from softphone.core.device import Device
from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_API_KEY_SID,
    DEV_APPLICATION_SID,
    DEV_SECRET,
    AccountStore,
    ApiKey,
    Application,
)
from softphone.gateway.call_store import CallRecord, CallStore, Recording
from softphone.gateway.calls import CallPhase
from softphone.gateway.server import Gateway, GatewayConfig

AUTH_TOKEN = "dev-account-auth-token-0123456789abcdef"
OTHER_ACCOUNT = "AC" + "b" * 32
OTHER_KEY = ApiKey("SK" + "b" * 32, "other-account-secret-of-32-bytes-or-more", OTHER_ACCOUNT)
UTC = dt.UTC
TokenFactory = Callable[..., str]


@pytest.fixture
def accounts() -> AccountStore:
    """The dev account (with an auth token) and another one with its own key."""
    store = AccountStore()
    store.add_account(DEV_ACCOUNT_SID, [Application(DEV_APPLICATION_SID)], auth_token=AUTH_TOKEN)
    store.add_key(ApiKey(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID))
    store.add_account(OTHER_ACCOUNT, [Application("AP" + "b" * 32)])
    store.add_key(OTHER_KEY)
    return store


@pytest.fixture
async def gateway(
    accounts: AccountStore, tmp_path: Path, loopback_media: None
) -> AsyncIterator[Gateway]:
    """A real gateway with its REST API and a call store file, on free ports."""
    config = GatewayConfig(
        port=0, api_port=0, db_path=tmp_path / "calls.sqlite3", heartbeat_interval_s=1.0
    )
    gw = await Gateway(accounts, config).start()
    yield gw
    await gw.stop()


@pytest.fixture
async def devices(
    gateway: Gateway, make_token: TokenFactory
) -> AsyncIterator[Callable[[str], Device]]:
    """Devices of the dev account on ``gateway``; destroyed at teardown."""
    made: list[Device] = []

    def factory(identity: str) -> Device:
        device = Device(make_token(identity), chunderw=gateway.url)
        made.append(device)
        return device

    yield factory
    for device in made:
        await device.destroy()


def helper(gateway: Gateway, user: str = DEV_API_KEY_SID, password: str = DEV_SECRET) -> Client:
    """The official client of the dev account, pointed at the gateway."""
    assert gateway.rest_api is not None
    client = Client(user, password, DEV_ACCOUNT_SID)
    client.api.base_url = gateway.rest_api.url
    return client


async def rest(
    gateway: Gateway,
    path: str,
    *,
    user: str = DEV_API_KEY_SID,
    password: str = DEV_SECRET,
    method: str = "GET",
    data: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A raw request to the REST API: status, headers, body."""
    assert gateway.rest_api is not None
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            gateway.rest_api.url + path,
            headers={"Authorization": f"Basic {basic}"},
            data=data,
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def calls_path(account: str = DEV_ACCOUNT_SID) -> str:
    return f"/2010-04-01/Accounts/{account}/Calls"


def stored_call(index: int, *, start: dt.datetime, account: str = DEV_ACCOUNT_SID) -> CallRecord:
    """An ended call as the gateway would have stored it."""
    t = start.timestamp()
    return CallRecord(
        sid=f"CA{index:032x}",
        account_sid=account,
        from_="client:pager",
        to="client:x",
        direction="inbound",
        status="completed",
        start_time=t,
        answer_time=t + 5,
        end_time=t + 65,
        duration=60.0,
    )


async def store_calls(gateway: Gateway, *calls: CallRecord) -> None:
    assert gateway.call_store is not None
    for call in calls:
        await gateway.call_store.run(CallStore.add_call, call, now=call.end_time or 0.0)


def sids(records: list[Any]) -> list[str]:
    return [record.sid for record in records]


# -- live calls ---------------------------------------------------------------------------
async def test_helper_lists_fetches_filters_and_completes_a_live_call(
    gateway: Gateway, devices: Callable[[str], Device]
) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    echo = await alice.connect(params={"To": "echo"})
    await echo.wait_for("accept", timeout=15)
    ringing = Listener(bob, accept=False)
    await bob.register()
    dialled = await carol.connect(params={"To": "client:bob"})
    incoming = await ringing.wait_call()
    assert echo.call_sid and dialled.call_sid
    client = helper(gateway)

    listed = await asyncio.to_thread(client.calls.list)
    by_sid = {call.sid: call for call in listed}
    assert len(listed) == 3  # echo, the dialled call and its leg to bob
    live = by_sid[echo.call_sid]
    assert (live.status, live.direction, live._from, live.to) == (
        "in-progress",
        "inbound",
        "client:alice",
        "echo",
    )
    assert live.account_sid == DEV_ACCOUNT_SID and live.api_version == "2010-04-01"
    assert live.end_time is None and live.duration is None and live.answered_by is None
    assert live.start_time is not None and live.start_time.tzinfo is not None
    assert live.uri == f"{calls_path()}/{echo.call_sid}.json"
    [leg] = [call for call in listed if call.parent_call_sid == dialled.call_sid]
    assert (leg.direction, leg.to, leg.status) == ("outbound-dial", "client:bob", "ringing")

    to_echo = await asyncio.to_thread(client.calls.list, to="echo")
    assert sids(to_echo) == [echo.call_sid]
    still_ringing = await asyncio.to_thread(client.calls.list, status="ringing")
    assert set(sids(still_ringing)) == {dialled.call_sid, leg.sid}
    children = await asyncio.to_thread(client.calls.list, parent_call_sid=dialled.call_sid)
    assert sids(children) == [leg.sid]
    fetched = await asyncio.to_thread(client.calls(echo.call_sid).fetch)
    assert (fetched.sid, fetched.status, fetched.to) == (echo.call_sid, "in-progress", "echo")

    # another account cannot end it, and the router says so
    assert await gateway.calls.end_call(OTHER_ACCOUNT, echo.call_sid, canceled=False) is None
    assert echo.status() == "open"

    ended = EventLog(echo, "disconnect")
    updated = await asyncio.to_thread(client.calls(echo.call_sid).update, status="completed")
    await ended.wait_for("disconnect", timeout=15)
    assert updated.status == "completed"
    assert updated.end_time is not None and updated.duration is not None
    assert int(updated.duration) >= 0
    assert incoming.status() == "pending"  # the other call rings on

    with pytest.raises(TwilioRestException) as again:
        await asyncio.to_thread(client.calls(echo.call_sid).update, status="completed")
    assert (again.value.status, again.value.code) == (400, 21220)


async def test_canceled_ends_a_ringing_call_and_leaves_an_answered_one(
    gateway: Gateway, devices: Callable[[str], Device]
) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    echo = await alice.connect(params={"To": "echo"})
    await echo.wait_for("accept", timeout=15)
    ringing = Listener(bob, accept=False)
    await bob.register()
    dialled = await carol.connect(params={"To": "client:bob"})
    incoming = await ringing.wait_call()
    assert echo.call_sid and dialled.call_sid
    client = helper(gateway)

    # Twilio: canceled "will not affect calls already in progress"
    unchanged = await asyncio.to_thread(client.calls(echo.call_sid).update, status="canceled")
    assert unchanged.status == "in-progress"
    assert echo.status() == "open"

    caller_side = EventLog(dialled, "disconnect")
    callee_side = EventLog(incoming, "cancel")
    canceled = await asyncio.to_thread(client.calls(dialled.call_sid).update, status="canceled")
    await caller_side.wait_for("disconnect", timeout=15)
    await callee_side.wait_for("cancel", timeout=15)
    assert canceled.status == "canceled" and canceled.duration is None
    [leg] = await asyncio.to_thread(client.calls.list, parent_call_sid=dialled.call_sid)
    assert leg.status == "canceled"
    assert echo.status() == "open"  # only the ringing call went

    with pytest.raises(TwilioRestException) as over:
        await asyncio.to_thread(client.calls(dialled.call_sid).update, status="canceled")
    assert (over.value.status, over.value.code) == (400, 21220)


async def test_a_dialled_legs_sid_ends_the_whole_call(
    gateway: Gateway, devices: Callable[[str], Device]
) -> None:
    alice, bob = devices("alice"), devices("bob")
    ringing = Listener(bob, accept=False)
    await bob.register()
    dialled = await alice.connect(params={"To": "client:bob"})
    incoming = await ringing.wait_call()
    leg_sid = incoming.call_sid
    assert leg_sid is not None and leg_sid != dialled.call_sid
    caller_side = EventLog(dialled, "disconnect")
    callee_side = EventLog(incoming, "cancel")
    assert await gateway.calls.end_call(DEV_ACCOUNT_SID, leg_sid, canceled=True) is (
        CallPhase.RINGING
    )
    await caller_side.wait_for("disconnect", timeout=15)
    await callee_side.wait_for("cancel", timeout=15)
    assert await gateway.calls.end_call(DEV_ACCOUNT_SID, leg_sid, canceled=True) is None


# -- paging and filters -------------------------------------------------------------------
async def test_the_helper_pages_through_three_pages_and_back(gateway: Gateway) -> None:
    first_day = dt.datetime(2024, 5, 1, 10, tzinfo=UTC)
    calls = [stored_call(i, start=first_day + dt.timedelta(days=i)) for i in range(5)]
    await store_calls(gateway, *calls)
    newest_first = [call.sid for call in reversed(calls)]
    client = helper(gateway)

    first = await asyncio.to_thread(client.calls.page, page_size=2)
    second = await asyncio.to_thread(first.next_page)
    assert second is not None
    third = await asyncio.to_thread(second.next_page)
    assert third is not None
    assert third.next_page_url is None
    back = await asyncio.to_thread(third.previous_page)
    assert back is not None
    assert [sids(list(p)) for p in (first, second, third, back)] == [
        newest_first[:2],
        newest_first[2:4],
        newest_first[4:],
        newest_first[2:4],
    ]
    everything = await asyncio.to_thread(client.calls.list, page_size=2)
    assert sids(everything) == newest_first
    assert [call.duration for call in everything] == ["60"] * 5
    assert everything[0].start_time == first_day + dt.timedelta(days=4)

    # the envelope Twilio's clients read
    status, _, raw = await rest(gateway, f"{calls_path()}.json?PageSize=2&Page=0&To=client:x")
    body = json.loads(raw)
    assert status == 200
    assert set(body) == {
        "calls",
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    }
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 2, 0, 1)
    assert body["previous_page_uri"] is None
    assert body["first_page_uri"] == f"{calls_path()}.json?To=client%3Ax&PageSize=2&Page=0"
    assert body["next_page_uri"].startswith(
        f"{calls_path()}.json?To=client%3Ax&PageSize=2&Page=1&PageToken="
    )
    status, _, raw = await rest(gateway, body["next_page_uri"])
    page_two = json.loads(raw)
    assert (page_two["page"], page_two["start"], page_two["end"]) == (1, 2, 3)
    assert page_two["previous_page_uri"] == f"{calls_path()}.json?To=client%3Ax&PageSize=2&Page=0"


async def test_start_time_filters_take_dates_and_date_times(gateway: Gateway) -> None:
    first_day = dt.datetime(2024, 5, 1, 10, tzinfo=UTC)
    calls = [stored_call(i, start=first_day + dt.timedelta(days=i)) for i in range(5)]
    await store_calls(gateway, *calls)
    client = helper(gateway)

    between = await asyncio.to_thread(
        client.calls.list,
        start_time_after=dt.datetime(2024, 5, 2, tzinfo=UTC),
        start_time_before=dt.datetime(2024, 5, 4, tzinfo=UTC),
    )
    assert sids(between) == [calls[2].sid, calls[1].sid]
    on_day = await asyncio.to_thread(client.calls.list, start_time=dt.date(2024, 5, 3))
    assert sids(on_day) == [calls[2].sid]

    for query, expected in (
        ("StartTime<=2024-05-02", [calls[0]]),  # on or before midnight of that date
        ("StartTime>=2024-05-04", [calls[4], calls[3]]),  # on or after its midnight
        ("StartTime=2024-05-05", [calls[4]]),  # on that date
        ("StartTime=2024-05-05T23:59:59Z", [calls[4]]),  # the date of the date-time
        ("StartTime>=2024-05-02T10:00:00Z&StartTime<=2024-05-02T10:00:00Z", [calls[1]]),
    ):
        status, _, raw = await rest(gateway, f"{calls_path()}.json?{query}")
        assert status == 200, raw
        assert [c["sid"] for c in json.loads(raw)["calls"]] == [c.sid for c in expected], query
    for bad in ("StartTime>=yesterday", "Status=talking", "PageSize=1001", "EndTime=2024-05-01"):
        status, _, raw = await rest(gateway, f"{calls_path()}.json?{bad}")
        assert status == 400, bad
        assert json.loads(raw)["code"] == 21609
    status, _, raw = await rest(gateway, f"{calls_path()}.json?PageToken=not-a-token")
    assert status == 400


# -- whose calls --------------------------------------------------------------------------
async def test_credentials_and_another_accounts_calls(gateway: Gateway) -> None:
    mine = stored_call(1, start=dt.datetime(2024, 5, 1, tzinfo=UTC))
    theirs = stored_call(2, start=dt.datetime(2024, 5, 1, tzinfo=UTC), account=OTHER_ACCOUNT)
    await store_calls(gateway, mine, theirs)

    client = helper(gateway)
    assert sids(await asyncio.to_thread(client.calls.list)) == [mine.sid]
    with pytest.raises(TwilioRestException) as not_mine:
        await asyncio.to_thread(client.calls(theirs.sid).fetch)
    assert (not_mine.value.status, not_mine.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as not_mine_to_end:
        await asyncio.to_thread(client.calls(theirs.sid).update, status="completed")
    assert not_mine_to_end.value.status == 404

    for form, code in (
        ({"Url": "http://127.0.0.1/x"}, 21220),  # an ended call cannot be redirected
        ({"Url": "ftp://127.0.0.1/x"}, 21609),
        ({"TimeLimit": "10"}, 21609),
        ({"Status": "busy"}, 21609),
    ):
        status, _, raw = await rest(
            gateway, f"{calls_path()}/{mine.sid}.json", method="POST", data=form
        )
        assert (status, json.loads(raw)["code"]) == (400, code), form
    status, _, raw = await rest(gateway, f"{calls_path()}/{mine.sid}.json", method="POST", data={})
    assert status == 200 and json.loads(raw)["status"] == "completed"  # nothing to change

    # the account's own sid and auth token work too
    by_token = helper(gateway, DEV_ACCOUNT_SID, AUTH_TOKEN)
    assert sids(await asyncio.to_thread(by_token.calls.list)) == [mine.sid]

    with pytest.raises(TwilioRestException) as wrong:
        await asyncio.to_thread(helper(gateway, DEV_API_KEY_SID, "wrong").calls(mine.sid).fetch)
    assert (wrong.value.status, wrong.value.code) == (401, 20003)
    for user, password in (
        (DEV_ACCOUNT_SID, "wrong-token"),
        (OTHER_ACCOUNT, ""),  # an account without an auth token: keys only
        (OTHER_KEY.sid, OTHER_KEY.secret),  # right credentials, another account's path
    ):
        status, headers, raw = await rest(
            gateway, f"{calls_path()}.json", user=user, password=password
        )
        body = json.loads(raw)
        assert status == 401, user
        assert body == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
        assert headers["WWW-Authenticate"].startswith("Basic ")
    status, _, _ = await rest(
        gateway,
        f"{calls_path(OTHER_ACCOUNT)}/{theirs.sid}.json",
        user=OTHER_KEY.sid,
        password=OTHER_KEY.secret,
    )
    assert status == 200


# -- recordings ---------------------------------------------------------------------------
def write_wav(path: Path, seconds: float) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00" * int(8000 * seconds))
    return path.read_bytes()


async def test_recordings_list_fetch_and_media(gateway: Gateway) -> None:
    store = gateway.call_store
    assert store is not None
    call = stored_call(7, start=dt.datetime(2024, 5, 1, 12, tzinfo=UTC))
    other_call = stored_call(8, start=dt.datetime(2024, 5, 1, 12, tzinfo=UTC))
    theirs = stored_call(9, start=dt.datetime(2024, 5, 1, 12, tzinfo=UTC), account=OTHER_ACCOUNT)
    await store_calls(gateway, call, other_call, theirs)
    audio = write_wav(store.recordings_dir / "voicemail.wav", 2.0)
    write_wav(store.recordings_dir / "theirs.wav", 1.0)
    created = (call.end_time or 0.0) + 1
    recording = Recording(
        sid="RE" + "1" * 32,
        call_sid=call.sid,
        account_sid=DEV_ACCOUNT_SID,
        path=store.recordings_dir / "voicemail.wav",
        duration=2.0,
        created=created,
    )
    their_recording = Recording(
        sid="RE" + "2" * 32,
        call_sid=theirs.sid,
        account_sid=OTHER_ACCOUNT,
        path=store.recordings_dir / "theirs.wav",
        duration=1.0,
        created=created,
    )
    await store.run(CallStore.add_recording, recording)
    await store.run(CallStore.add_recording, their_recording)
    client = helper(gateway)

    [listed] = await asyncio.to_thread(client.recordings.list)
    assert (listed.sid, listed.call_sid, listed.duration) == (recording.sid, call.sid, "2")
    assert (listed.status, listed.source, listed.channels) == ("completed", "RecordVerb", 1)
    assert listed.date_created == dt.datetime.fromtimestamp(int(created), UTC)
    base = f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Recordings/{recording.sid}"
    assert gateway.rest_api is not None
    assert listed.media_url == gateway.rest_api.url + base
    fetched = await asyncio.to_thread(client.recordings(recording.sid).fetch)
    assert fetched.uri == f"{base}.json"
    of_call = await asyncio.to_thread(client.calls(call.sid).recordings.list)
    assert sids(of_call) == [recording.sid]
    assert await asyncio.to_thread(client.calls(other_call.sid).recordings.list) == []
    assert sids(await asyncio.to_thread(client.recordings.list, call_sid=call.sid)) == [
        recording.sid
    ]
    assert await asyncio.to_thread(client.recordings.list, call_sid=other_call.sid) == []

    for media in (f"{base}.wav", base):
        status, headers, body = await rest(gateway, media)
        assert status == 200, media
        assert headers["Content-Type"] == "audio/x-wav"
        assert body == audio

    theirs_base = f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Recordings/{their_recording.sid}"
    for path in (f"{theirs_base}.json", f"{theirs_base}.wav", f"{base}.mp3"):
        status, _, raw = await rest(gateway, path)
        assert status == 404, path
        assert json.loads(raw)["code"] == 20404
    assert await asyncio.to_thread(client.calls(theirs.sid).recordings.list) == []
    assert await asyncio.to_thread(client.recordings.list, call_sid=theirs.sid) == []

    status, _, _ = await rest(gateway, f"{base}.wav", password="wrong")
    assert status == 401
    (store.recordings_dir / "voicemail.wav").unlink()
    status, _, _ = await rest(gateway, f"{base}.wav")
    assert status == 404


async def test_without_a_call_store_there_are_no_calls_to_serve(
    accounts: AccountStore, loopback_media: None
) -> None:
    gw = await Gateway(accounts, GatewayConfig(port=0, api_port=0)).start()
    try:
        for path in (
            f"{calls_path()}.json",
            f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Recordings.json",
        ):
            status, _, raw = await rest(gw, path)
            assert status == 404
            assert json.loads(raw)["code"] == 20404
    finally:
        await gw.stop()


async def test_a_call_is_listed_while_it_rings_and_after_it_ends(
    gateway: Gateway, devices: Callable[[str], Device]
) -> None:
    alice, bob = devices("alice"), devices("bob")
    ringing = Listener(bob, accept=False)
    await bob.register()
    dialled = await alice.connect(params={"To": "client:bob"})
    incoming = await ringing.wait_call()
    client = helper(gateway)
    both = await asyncio.to_thread(client.calls.list, to="client:bob", status="ringing")
    assert set(sids(both)) == {dialled.call_sid, incoming.call_sid}
    hung_up = EventLog(dialled, "disconnect")
    incoming.reject()
    await hung_up.wait_for("disconnect", timeout=15)
    await eventually(lambda: not gateway.calls.calls)
    rejected = await asyncio.to_thread(client.calls(dialled.call_sid or "").fetch)
    assert rejected.status == "busy" and rejected.end_time is not None
    assert await asyncio.to_thread(client.calls.list, status="ringing") == []
