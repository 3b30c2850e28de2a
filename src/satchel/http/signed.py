"""Signed links at the edge: a link's ``expires`` and ``sig`` checked against its
resource's canonical path, before anything is looked up (see ``links.py``)."""

from __future__ import annotations

import time

from aiohttp import web

from satchel.errors import BadSignature, LinkExpired, UnsignedLink
from satchel.http.keys import LINK_SECRETS
from satchel.links import Verdict, verify


def check_link(request: web.Request, path: str, *, required: bool) -> None:
    """403 for a forged signature (or none, where one is ``required``), 410 for an
    expired one; nothing for a valid one, or none where none is required."""
    secrets = request.app[LINK_SECRETS]
    query = request.query
    verdict = verify(secrets, path, query.get("expires"), query.get("sig"), time.time())
    if verdict is Verdict.UNSIGNED and required:
        raise UnsignedLink()
    if verdict is Verdict.FORGED:
        raise BadSignature(
            None if secrets else "This server has no --link-secret: it cannot check signed links."
        )
    if verdict is Verdict.EXPIRED:
        raise LinkExpired()
