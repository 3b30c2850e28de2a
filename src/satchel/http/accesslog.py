"""The access log: one line per request, written straight to the log's stream.

aiohttp's own access logger sends every line through ``logging`` (a record, the
caller's frame, a formatted time): 27 µs a request, more than answering /check
itself (bench/RESULTS.md). This one writes each line with one ``os.write``, in the
layout of the other log lines, and fixes what that logger got wrong here:

- the time taken: aiohttp measures it with the loop's clock, which uvloop updates
  once per turn of the loop, so every quick request took "0.000000s";
- the bytes: aiohttp counts only what went through its writer, so a file sent by
  ``os.sendfile`` was logged as the size of its headers;
- the client: behind a trusted proxy, the address the proxy forwarded (as the
  per-client limits see it), not the proxy's own;
- quotes and control characters in the logged headers are escaped, so a client
  cannot forge a field or a line.

With --log-format json a line is one JSON object, its fields named.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from satchel.http.requestid import KEY as REQUEST_ID
from satchel.logs import utc_stamp
from satchel.peers import Network, client_address

STARTED = web.RequestKey("access_log_started", float)  # perf_counter() when the handler began
DIRECT_BYTES = web.RequestKey("access_log_direct_bytes", int)  # body bytes sent by sendfile


def access_log_class(
    trusted: tuple[Network, ...], proxy_header: str, *, json_lines: bool = False
) -> type[AbstractAccessLogger]:
    """The logger aiohttp is to make for each server, told who the trusted proxies are;
    it writes to standard error, where the other log lines go."""

    base = _JsonAccessLog if json_lines else _AccessLog
    fields = {"_trusted": trusted, "_header": proxy_header, "_fd": sys.stderr.fileno()}
    return type("AccessLog", (base,), fields)


class _AccessLog(AbstractAccessLogger):
    _trusted: tuple[Network, ...]
    _header: str
    _fd: int
    _second = -1
    _stamp = ""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a request
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        started = request.get(STARTED)
        took = time_ if started is None else time.perf_counter() - started
        headers = request.headers
        client = client_address(request.remote, headers, self._trusted, self._header)
        version = request.version
        target = f"{request.method} {_redacted(request.raw_path)} HTTP/{version[0]}.{version[1]}"
        referer = _redacted(headers.get("Referer", "-"))
        line = (
            f"{self._stamp},{int(now % 1 * 1000):03d} INFO satchel.access: {client} "
            f'"{_quoted(target)}" '
            f"{response.status} {response.body_length + request.get(DIRECT_BYTES, 0)} "
            f'"{_quoted(referer)}" "{_quoted(headers.get("User-Agent", "-"))}" '
            f"{took:.6f}s [{request.get(REQUEST_ID, '-')}]\n"
        )
        self._write(line)

    def _write(self, line: str) -> None:
        with contextlib.suppress(OSError):  # a full disk must not fail the request
            os.write(self._fd, line.encode())


class _JsonAccessLog(_AccessLog):
    """The same fields, named, in the layout of logs.JsonLines; put together by hand,
    as json.dumps of the whole line took twice as long (bench/RESULTS.md)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = utc_stamp(second)[:-5]  # without ".000Z"
        started = request.get(STARTED)
        took = time_ if started is None else time.perf_counter() - started
        headers = request.headers
        client = client_address(request.remote, headers, self._trusted, self._header)
        method, path = request.method, _redacted(request.raw_path)
        status = response.status
        referer, agent = headers.get("Referer"), headers.get("User-Agent")
        self._write(
            f'{{"time": "{self._stamp}.{int(now % 1 * 1000):03d}Z", "level": "INFO", '
            f'"logger": "satchel.access", "message": {_json(f"{method} {path} {status}")}, '
            f'"request_id": {_json(request.get(REQUEST_ID))}, "client": {_json(client)}, '
            f'"method": "{method}", "path": {_json(path)}, "status": {status}, '
            f'"bytes": {response.body_length + request.get(DIRECT_BYTES, 0)}, '
            f'"duration": {took:.6f}, '
            f'"referer": {_json(None if referer is None else _redacted(referer))}, '
            f'"user_agent": {_json(agent)}}}\n'
        )


def _json(value: str | None) -> str:
    """``value`` as a JSON string (or null): most values need no escaping at all."""
    if value is None:
        return "null"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


def _redacted(target: str) -> str:
    """The request target without the values of ``token``-like query parameters: a
    delete link opened in a browser must not leave its token in the log."""
    if "?" not in target or "token" not in target.lower():  # most lines: one look
        return target
    return _TOKEN_VALUE.sub(r"\1[redacted]", target)


_TOKEN_VALUE = re.compile(r"([^?&;=]*token=)[^&;#]*", re.IGNORECASE)


def _quoted(value: str) -> str:
    """``value`` safe inside double quotes on one line: quotes and backslashes escaped,
    and every character that is not printable (controls, line separators) spelled out."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(_escaped(c) for c in value)


def _escaped(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    return char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
