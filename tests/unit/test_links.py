"""Signed links: what one secret signs, it and only it verifies, until the time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from satchel.links import Verdict, canonical, signature, signed_query, verify

secrets = st.binary(min_size=16, max_size=64)
paths = st.text(min_size=1).map(lambda s: f"/archive/{s}/")
times = st.integers(min_value=0, max_value=10**12 - 1)


def _parts(query: str) -> tuple[str, str]:
    expires, sig = (pair.split("=", 1)[1] for pair in query.split("&"))
    return expires, sig


@given(secrets, paths, times)
def test_a_link_verifies_until_its_expiry_and_not_after(secret: bytes, path: str, at: int) -> None:
    expires, sig = _parts(signed_query(secret, path, at))
    assert verify([secret], path, expires, sig, at - 1) is Verdict.VALID
    assert verify([secret], path, expires, sig, at) is Verdict.EXPIRED


@given(secrets, secrets, paths, paths, times, times)
def test_any_change_is_a_forgery(
    secret: bytes, other: bytes, path: str, other_path: str, at: int, other_at: int
) -> None:
    sig = signature(secret, path, at)
    if other != secret:
        assert verify([other], path, str(at), sig, 0) is Verdict.FORGED
    if other_path != path:
        assert verify([secret], other_path, str(at), sig, 0) is Verdict.FORGED
    if other_at != at:  # a forged link never learns whether it expired
        assert verify([secret], path, str(other_at), sig, 10**13) is Verdict.FORGED


@given(secrets, secrets, paths, times)
def test_during_a_rotation_either_secret_verifies(
    new: bytes, old: bytes, path: str, at: int
) -> None:
    expires, sig = _parts(signed_query(old, path, at))
    assert verify([new, old], path, expires, sig, at - 1) is Verdict.VALID


@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()))
def test_whatever_a_client_sends_is_a_verdict(expires: str | None, sig: str | None) -> None:
    verdict = verify([b"0123456789abcdef"], "/archive/x/", expires, sig, 0)
    assert verdict is (Verdict.UNSIGNED if expires is None and sig is None else Verdict.FORGED)


def test_every_spelling_of_a_link_has_one_canonical_path() -> None:
    for link in ("/archive/7kna", "/archive/7kna/", "https://cdn.example/archive/7kna/?x=1"):
        assert canonical(link) == "/archive/7kna/"
    for link in ("/files/abc/", "/files/abc", "/download/abc", "http://h:8080/files/abc/"):
        assert canonical(link) == "/files/abc/"
    for link in ("/archive/m/Xy_9/", "/archive/m/Xy_9", "https://h/archive/m/Xy_9/?name=a"):
        assert canonical(link) == "/archive/m/Xy_9/"
    assert canonical("/archive/m/") == "/archive/m/"  # a folder named m
    for link in ("/archive/", "/check/abc", "/archive/a/b", "archive/7kna/", ""):
        assert canonical(link) is None
