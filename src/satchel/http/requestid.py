"""The request id: what a trusted proxy sent in X-Request-Id, or made here; returned
in the answer's X-Request-Id and written on every log line of the request."""

from __future__ import annotations

import itertools
import os
import re

from aiohttp import web

from satchel.logs import REQUEST_ID
from satchel.peers import Network, is_trusted

HEADER = "X-Request-Id"
KEY = web.RequestKey("request_id", str)

_GIVEN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # safe in a header and on a log line
_PROCESS = os.urandom(6).hex()  # with a count: unique across processes and instances
_count = itertools.count(1)


def take(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The request's id, remembered on the request and in the task's context."""
    given = request.headers.get(HEADER)
    if given is not None and _GIVEN.fullmatch(given) and is_trusted(request.remote, trusted):
        request_id = given
    else:
        request_id = f"{_PROCESS}-{next(_count):x}"
    request[KEY] = request_id
    REQUEST_ID.set(request_id)
    return request_id
