"""Answers with a body of our own: JSON that ends with a newline (a terminal's prompt
comes back on a line of its own after `curl`), and the plain text a client that asks
for it gets instead (`Accept: text/plain`: the links alone, as transfer.sh answers)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


def json_answer(
    value: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(value, status=status, headers=headers, dumps=dumps)


def wants_text(request: web.Request, *, default: bool = False) -> bool:
    """Whether the client asked for text/plain rather than JSON; ``default`` when it
    named neither (curl sends ``*/*``)."""
    accept = request.headers.get("Accept", "")
    text, json_ = "text/plain" in accept, "application/json" in accept
    return default if text == json_ else text
