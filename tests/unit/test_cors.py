"""Which origin may do what: listed ones everything, '*' downloads only."""

from __future__ import annotations

import pytest

from satchel.cors import Cors, parse_origins


def test_listed_origins_may_do_everything_and_star_only_download() -> None:
    cors = Cors.of(parse_origins(["https://cms.example", "*"]))
    assert cors is not None
    assert cors.allow_origin("https://cms.example", "PATCH") == "https://cms.example"
    assert cors.allow_origin("HTTPS://CMS.EXAMPLE", "POST") == "HTTPS://CMS.EXAMPLE"
    assert cors.allow_origin("https://other.example", "GET") == "*"
    assert cors.allow_origin("https://other.example", "POST") is None
    only = Cors.of(parse_origins(["http://127.0.0.1:8080"]))
    assert only is not None and only.allow_origin("http://127.0.0.1:8081", "GET") is None
    assert Cors.of(()) is None


@pytest.mark.parametrize("bad", ["cms.example", "https://cms.example/app", "ftp://h", ""])
def test_an_origin_is_a_scheme_a_host_and_maybe_a_port(bad: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        parse_origins([bad])


def test_requested_headers_are_echoed_only_when_they_are_header_names() -> None:
    assert Cors.allow_headers("tus-resumable, Upload-Length") == "tus-resumable, Upload-Length"
    assert Cors.allow_headers("x-ok, bad header") is None
    assert Cors.allow_headers("a\r\nSet-Cookie: x") is None
