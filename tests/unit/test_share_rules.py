"""The pure rules of shares: names in "download all", passwords, sessions, attempts,
and the JSON bodies of the API."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.archive.selection import clashing_names
from satchel.errors import BadRequest
from satchel.shares.rules import (
    KEEP,
    Attempts,
    Bounds,
    Share,
    archive_names,
    check_password,
    hash_password,
    parse_change,
    parse_new,
    session_cookie,
    session_valid,
)
from satchel.zipstream.names import unsafe_reason

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
BOUNDS = Bounds(default_days=7, max_days=30, default_downloads=None, max_downloads=None)


@given(st.lists(st.text(max_size=300), max_size=30))
def test_archive_names_are_safe_and_distinct_for_any_upload_names(names: list[str]) -> None:
    named = archive_names(names)
    assert len(named) == len(names)
    assert all(unsafe_reason(n) is None and "/" not in n for n in named)
    assert clashing_names(named) is None


def test_archive_names_keep_good_names_and_tell_twins_apart() -> None:
    assert archive_names(["a.jpg", "A.JPG", "a.jpg", "CON.txt", "x:y", "..", "notes"]) == [
        "a.jpg",
        "A (2).JPG",
        "a (3).jpg",
        "_CON.txt",
        "x_y",
        "file 6",
        "notes",
    ]


def test_a_password_verifies_and_another_does_not() -> None:
    record = hash_password("correct horse")
    assert record.startswith("scrypt$15$8$1$")
    assert check_password("correct horse", record)
    assert not check_password("correct horsE", record)
    assert record != hash_password("correct horse")  # salted
    assert not check_password("x", "not a record")
    # the same text in another Unicode form is the same password
    assert check_password("cafe\u0301", hash_password("café"))


def test_a_session_holds_for_its_share_and_password_until_it_ends() -> None:
    share = Share("s" * 22, NOW, NOW + timedelta(days=1), None, password=hash_password("pw"))
    cookie = session_cookie(share, NOW)
    assert session_valid(share, cookie, NOW + timedelta(hours=11))
    assert not session_valid(share, cookie, NOW + timedelta(hours=13))  # expired
    other = Share("t" * 22, NOW, NOW, None, password=share.password)
    assert not session_valid(other, cookie, NOW)  # another share
    renewed = Share(share.id, NOW, NOW, None, password=hash_password("pw"))
    assert not session_valid(renewed, cookie, NOW)  # a new password ends it
    until, _, mac = cookie.partition(".")
    assert not session_valid(share, f"{int(until) + 3600}.{mac}", NOW)  # lengthened
    for forged in ("", ".", "abc.def", f"{until}."):
        assert not session_valid(share, forged, NOW)


def test_attempts_wait_after_the_limit_and_forget_in_time() -> None:
    attempts = Attempts(limit=3, window=timedelta(minutes=10))
    for minute in range(3):
        assert attempts.wait("1.2.3.4", "s", NOW) == 0
        attempts.failed("1.2.3.4", "s", NOW + timedelta(minutes=minute))
    assert attempts.wait("1.2.3.4", "s", NOW + timedelta(minutes=3)) == 7 * 60 + 1
    assert attempts.wait("5.6.7.8", "s", NOW) == 0  # another client
    assert attempts.wait("1.2.3.4", "t", NOW) == 0  # another share
    assert attempts.wait("1.2.3.4", "s", NOW + timedelta(minutes=10, seconds=1)) == 0
    attempts.succeeded("1.2.3.4", "s")
    assert attempts.wait("1.2.3.4", "s", NOW + timedelta(minutes=3)) == 0


def test_attempts_keep_a_bounded_number_of_clients() -> None:
    attempts = Attempts(limit=1, size=100)
    for n in range(1000):
        attempts.failed(f"10.0.{n // 256}.{n % 256}", "s", NOW)
    assert len(attempts._failures) == 100
    assert attempts.wait("10.0.3.231", "s", NOW) > 0  # the newest are kept


def test_new_shares_are_held_to_the_server_bounds() -> None:
    assert parse_new({}, BOUNDS).days == 7
    wanted = parse_new({"max_days": 3, "max_downloads": 5, "password": "pw"}, BOUNDS)
    assert (wanted.days, wanted.max_downloads, wanted.password) == (3, 5, "pw")
    capped = Bounds(7, 30, None, 10)
    assert parse_new({}, capped).max_downloads == 10
    assert parse_new({"max_downloads": 50}, capped).max_downloads == 10
    assert parse_new({"max_downloads": None}, capped).max_downloads == 10


def test_a_change_names_only_what_it_changes() -> None:
    change = parse_change({"password": None}, BOUNDS)
    assert change.password is None and change.days is KEEP and change.max_downloads is KEEP
    assert parse_change({"closed": True}, BOUNDS).close


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["max_days", "max_downloads", "password", "closed", "x"]), inner
            )
        ),
        max_leaves=8,
    )
)
def test_any_json_body_is_taken_or_refused_with_a_bad_request(body: object) -> None:
    for parse in (parse_new, parse_change):
        with contextlib.suppress(BadRequest):  # anything else fails the test
            parse(body, BOUNDS)


def test_a_body_of_the_wrong_kind_says_so() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        parse_new([], BOUNDS)
    with pytest.raises(BadRequest, match="Unknown key 'name'"):
        parse_new({"name": "x"}, BOUNDS)
