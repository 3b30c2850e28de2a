"""The OpenAPI document is served and describes every route the app has."""

from __future__ import annotations

import re

from .conftest import ClientFactory


async def test_openapi_document_covers_every_route(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops
                  if method != "parameters"}  # fmt: skip
    served = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        pattern = info.get("path") or info.get("formatter") or ""
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", pattern)  # "{path:.+}" is "{path}"
        if route.method != "*" and path:
            served.add((path, route.method))
    assert served == documented


async def test_folder_pattern_matches_the_code(make_client: ClientFactory) -> None:
    from satchel.archive.manifest import FOLDER_RE

    doc = await (await (await make_client()).get("/openapi.json")).json()
    pattern = doc["components"]["parameters"]["folder"]["schema"]["pattern"]
    assert re.compile(pattern.strip("^$")).pattern == FOLDER_RE.pattern
