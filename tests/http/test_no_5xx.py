"""Fuzz every route of the OpenAPI document on a live server: no input gives a 5xx.

Hypothesis draws the route, its path parameters, headers, query values and body from
what clients really send and what they get wrong (numbers int() chokes on, broken
content codings, cut multipart bodies, odd ranges and dates); after each request the
server must still answer /healthz. schemathesis (tests/interop) checks the schemas;
this checks the values nobody would put in a schema.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, pg_database, start_server, stop_server

OPENAPI = Path(__file__).parents[2] / "src" / "satchel" / "web" / "openapi.json"
ROUTES = sorted(
    (path, method.upper())
    for path, ops in json.loads(OPENAPI.read_text())["paths"].items()
    for method in ops
    if method != "parameters"
)
HEADERS = ["Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since",
           "If-Unmodified-Since", "Max-Downloads", "Max-Days", "Content-Type",
           "Content-Encoding", "Content-Disposition", "Content-Digest", "Repr-Digest",
           "Authorization", "X-Delete-Token", "X-Forwarded-For", "Forwarded", "Accept",
           "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata",
           "Upload-Checksum", "Upload-Concat", "Upload-Defer-Length"]  # fmt: skip
QUERY = ["kbps", "token", "name", "max_days", "max_downloads"]

_latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["²", "١٢", "1_000", "+5", " 7 ", "1e3", "0x1f", "9" * 5000, "", "0"]),
)
_values = st.one_of(
    _numbers,
    st.text(_latin1, max_size=40),
    st.builds(lambda a, b: f"bytes={a}-{b}", _numbers, _numbers),
    st.sampled_from(["bytes=0-0,-1", "bytes=" + "0-1," * 300, "gzip", "deflate", "br",
                     "Bearer t", "Bearer", "1.0.0", "sha256 AAAA", "partial",
                     "final;/tus/x /tus/y", "multipart/form-data; boundary=B",
                     "multipart/form-data", "attachment; filename*=UTF-8''%FF%FE",
                     "sha-256=:AAAA:", "Thu, 01 Jan 1970 00:00:00 GMT",
                     "Mon, 31 Feb 99999 25:61:61 GMT", '"abc", W/"x"', "*",
                     "for=\"[::1]\";proto=http", "text/html", "filename a2V5"]),
)  # fmt: skip
_bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.binary(max_size=3000).map(gzip.compress).flatmap(
        lambda z: st.integers(0, len(z)).map(lambda cut: z[:cut])
    ),
    st.sampled_from([b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
                     b"--B\r\n\r\n--B--\r\n", b"--B--", b'--B\r\nContent-Disposition: x\r\n']),
    # selections (POST /archives/): right and wrong in every part
    st.fixed_dictionaries(
        {"entries": st.lists(st.dictionaries(
            st.sampled_from(["path", "file", "name"]),
            st.one_of(st.sampled_from(["demo/a.jpg", "demo/../a.jpg", "demo", "x/a.jpg",
                                       "AAAAAAAAAAAAAAAAAAAAAA", "CON", "a/b", ""]),
                      st.integers(), st.none(), st.text(max_size=10)),
            max_size=3), max_size=3)},
        optional={"ttl": st.one_of(st.integers(), st.text(max_size=3)),
                  "name": st.one_of(st.text(max_size=10), st.integers())},
    ).map(lambda body: json.dumps(body).encode()),
)  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    photos, data = root / "photos", root / "data"
    (photos / "demo").mkdir(parents=True)
    (photos / "demo" / "a.jpg").write_bytes(os.urandom(200))
    with contextlib.ExitStack() as stack:
        db = [] if request.param == "sqlite" else ["--db", stack.enter_context(pg_database())]
        live = start_server(photos, data, root, None, "--upload-token", "t", *db)
        yield from _prepared(live)
    log = (root / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def _prepared(live: LiveServer) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """The server with a stored file and a tus upload that the drawn requests may hit."""
    status, body = _request(live, "POST", "/files/", {"Authorization": "Bearer t"}, b"x" * 100)
    assert status == 201
    known = {"id": json.loads(body)["id"], "folder": "demo"}
    headers = {"Authorization": "Bearer t", "Tus-Resumable": "1.0.0", "Upload-Length": "10"}
    conn = http.client.HTTPConnection("127.0.0.1", int(live.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", "/tus/", headers=headers)
    known["upload"] = conn.getresponse().headers["Location"].rstrip("/").rsplit("/", 1)[1]
    conn.close()
    selection = json.dumps({"entries": [{"path": "demo/a.jpg"}, {"file": known["id"]}]})
    status, body = _request(
        live, "POST", "/archives/", {"Authorization": "Bearer t"}, selection.encode()
    )
    assert status == 201, body
    known["selection"] = json.loads(body)["id"]
    try:
        yield live, known
    finally:
        stop_server(live)


def _request(
    live: LiveServer, method: str, target: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", int(live.url.rsplit(":", 1)[1]), timeout=20)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value.encode())  # raw UTF-8, as clients send it
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@st.composite
def requests(draw: Any, known: dict[str, str]) -> tuple[str, str, dict[str, str], bytes]:
    path, method = draw(st.sampled_from(ROUTES))
    text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
    for param, real in (("{folder}", known["folder"]), ("{path}", "x/y.jpg"),
                        ("{name}", "n.txt")):  # fmt: skip
        if param in path:
            path = path.replace(param, quote(draw(st.one_of(st.just(real), text)), safe="/"))
    if "{id}" in path:
        real = known["upload"] if path.startswith("/tus/") else known["id"]
        if path.startswith(("/archive/m/", "/archives/")):
            real = known["selection"]
        path = path.replace("{id}", quote(draw(st.one_of(st.just(real), text)), safe=""))
    names = draw(st.lists(st.sampled_from(HEADERS), unique=True, max_size=6))
    headers = {name: draw(_values) for name in names}
    query = {key: draw(_values) for key in draw(st.lists(st.sampled_from(QUERY), unique=True))}
    target = path + ("?" + urlencode(query) if query else "")
    return method, target, headers, draw(_bodies)


def test_no_request_gets_a_5xx_and_the_server_keeps_answering(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, known = server
    seen: set[int] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests(known))
    def one(drawn: tuple[str, str, dict[str, str], bytes]) -> None:
        method, target, headers, body = drawn
        status, _ = _request(live, method, target, headers, body)
        seen.add(status)
        assert status < 500, (method, target, headers, body[:100])
        assert _request(live, "GET", "/healthz", {}, b"")[0] == 200

    one()
    # The drawn requests reached the handlers' work and several refusals, not one refusal.
    assert any(status < 300 for status in seen), seen
    assert len({status for status in seen if 400 <= status < 500}) >= 3, seen
