"""Shares: the API (/shares/), the page (/s/<id>/), its files, "download all" and the
QR code of its link."""

from __future__ import annotations

import asyncio
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from satchel.archive.manifest import Manifest
from satchel.archive.sources import MixedSources
from satchel.errors import (
    Forbidden,
    PasswordRequired,
    SatchelError,
    TooManyRequests,
    WrongPassword,
)
from satchel.files.rules import StoredFile, describe
from satchel.http import archive
from satchel.http.answers import json_answer
from satchel.http.body import json_body
from satchel.http.files import authorize_upload, base_url, send_file
from satchel.http.keys import ARCHIVES, FILESTORE, SETTINGS, SHARE_HTML, SHARES, TRUSTED_PROXIES
from satchel.peers import client_address
from satchel.shares.rules import (
    COOKIE,
    MAX_BODY,
    SESSION,
    Share,
    parse_change,
    parse_new,
    session_cookie,
    session_valid,
)
from satchel.shares.service import Shares

PASSWORD_HEADER = "Satchel-Share-Password"
PREVIEWS = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"})
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def _share_id(request: web.Request) -> str:
    return request.match_info["id"]


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def share_url(request: web.Request, share_id: str) -> str:
    return f"{base_url(request)}/s/{share_id}/"


async def _opened(request: web.Request, share: Share) -> None:
    """Nothing if the request may see the share: it has no password, or the request
    has the owner token, a session cookie, or the password; else 403 (429 after too
    many wrong ones)."""
    if share.password is None:
        return
    shares = request.app[SHARES]
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and session_valid(share, cookie, datetime.now(UTC)):
        return
    owner = _bearer(request)
    if owner is not None:
        try:
            await shares.owned(share.id, owner)
            return
        except SatchelError:
            pass  # perhaps the server's upload token: the password may still open it
    await shares.unlock(share, request.headers.get(PASSWORD_HEADER), _client(request))


def _client(request: web.Request) -> str:
    settings = request.app[SETTINGS]
    proxies = request.app[TRUSTED_PROXIES]
    return client_address(request.remote, request.headers, proxies, settings.proxy_header)


def _described(
    request: web.Request, share: Share, files: Sequence[StoredFile], shares: Shares
) -> dict[str, object]:
    base, url = base_url(request), share_url(request, share.id)
    return {
        "id": share.id,
        "url": url,
        "created_at": share.created_at.isoformat(),
        "expires_at": share.expires_at.isoformat(),
        "closed": share.closed,
        "password": share.password is not None,
        "max_downloads": share.max_downloads,
        "downloads_left": share.downloads_left,
        "archive": {"url": f"{url}all.zip", "size": shares.manifest(share, files).layout.size},
        "size": sum(f.size for f in files),
        "files": [describe(f, base) for f in files],
    }


# -- the API ----------------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    """POST /shares/: a new, empty share; its link and its owner token."""
    authorize_upload(request)
    shares = request.app[SHARES]
    body = await json_body(request, MAX_BODY) if request.body_exists else {}
    share, token = await shares.create(parse_new(body, shares.bounds))
    url = share_url(request, share.id)
    answer = _described(request, share, [], shares)
    answer["owner_token"] = token
    answer["owner_url"] = f"{url}#owner={quote(token)}"
    return json_answer(answer, status=201, headers={"Location": url})


async def show(request: web.Request) -> web.Response:
    """GET /shares/<id>: the share and its files (its password, if it has one)."""
    shares = request.app[SHARES]
    share = await shares.get(_share_id(request))
    await _opened(request, share)
    files = await shares.files(share)
    return json_answer(_described(request, share, files, shares))


async def change(request: web.Request) -> web.Response:
    """PATCH /shares/<id> with the owner token: expiry, limit, password, closing."""
    shares = request.app[SHARES]
    share = await shares.owned(_share_id(request), _bearer(request))
    wanted = parse_change(await json_body(request, MAX_BODY), shares.bounds)
    share = await shares.change(share, wanted)
    return json_answer(_described(request, share, await shares.files(share), shares))


async def delete(request: web.Request) -> web.Response:
    """DELETE /shares/<id> with the owner token: the share and its files are gone."""
    shares = request.app[SHARES]
    await shares.delete(await shares.owned(_share_id(request), _bearer(request)))
    return web.Response(status=204)


# -- downloads --------------------------------------------------------------------------


class ShareCount:
    """A whole download of a share's file or of its archive counts against the share."""

    def __init__(self, shares: Shares, share: Share) -> None:
        self.shares, self.share = shares, share
        self.limited = share.max_downloads is not None

    async def start(self) -> None:
        await self.shares.start_download(self.share)

    async def end(self, *, completed: bool) -> None:
        ended = self.shares.end_download(self.share, completed=completed)
        await (asyncio.shield(ended) if self.limited else ended)  # a claim is given back


async def file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /s/<id>/f/<file id>: one file of the share."""
    shares = request.app[SHARES]
    share = await shares.get(_share_id(request))
    await _opened(request, share)
    record = await shares.file(share, request.match_info["file"])
    return await send_file(request, record, ShareCount(shares, share))


async def download_all(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /s/<id>/all.zip: every file of the share, one resumable ZIP."""
    shares = request.app[SHARES]
    share = await shares.get(_share_id(request))
    await _opened(request, share)
    files = await shares.files(share)
    manifest = shares.manifest(share, files)
    sources = MixedSources(request.app[ARCHIVES].folders, request.app[FILESTORE].storage)

    async def plan() -> Manifest:
        return manifest

    count = ShareCount(shares, share)
    return await archive.serve(request, plan, sources, f"share-{share.id[:8]}", count)


async def qr(request: web.Request) -> web.Response:
    """GET /s/<id>/qr.svg: the share's link as a QR code (it says only the link)."""
    import segno  # only when a code is asked for

    share = await request.app[SHARES].get(_share_id(request))
    out = io.BytesIO()
    segno.make(share_url(request, share.id), error="m").save(
        out, kind="svg", scale=4, border=2, xmldecl=False, title="Share link"
    )
    return web.Response(
        body=out.getvalue(),
        content_type="image/svg+xml",
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


# -- the page ---------------------------------------------------------------------------


async def page(request: web.Request) -> web.Response:
    """GET /s/<id>/: the share's files, each to download, and "Download all"; or, for
    a share with a password not yet given in this browser, a form that asks for it."""
    shares = request.app[SHARES]
    share = await shares.get(_share_id(request))
    try:
        await _opened(request, share)
    except PasswordRequired:
        return _locked(request, share, "", 200)
    except (WrongPassword, TooManyRequests) as exc:
        return _locked(request, share, exc.message, exc.status)
    return _page(request, share, await shares.files(share))


async def to_page(request: web.Request) -> web.Response:
    """GET /s/<id>: the page is at /s/<id>/, where its relative links work."""
    return web.Response(status=308, headers={"Location": f"/s/{quote(_share_id(request))}/"})


async def unlock(request: web.Request) -> web.Response:
    """POST /s/<id>/ (the page's form): the password, or the owner token (which the
    owner link's script sends), checked; a session cookie for this share's pages, and
    back to the page (303)."""
    shares = request.app[SHARES]
    share = await shares.get(_share_id(request))
    form = await request.post()
    password, owner = form.get("password"), form.get("owner")
    try:
        if isinstance(owner, str) and owner:
            await shares.owned(share.id, owner)
        else:
            await shares.unlock(
                share, password if isinstance(password, str) else None, _client(request)
            )
    except (Forbidden, TooManyRequests) as exc:
        return _locked(request, share, exc.message, exc.status)
    url = share_url(request, share.id)
    answer = web.Response(status=303, headers={"Location": url, "Cache-Control": "no-store"})
    if share.password is None:  # nothing to open (its password was removed meanwhile)
        return answer
    answer.set_cookie(
        COOKIE,
        session_cookie(share, datetime.now(UTC)),
        path=f"/s/{share.id}/",
        max_age=int(SESSION.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=url.startswith("https:"),
    )
    return answer


def _render(request: web.Request, status: int, title: str, body: str) -> web.Response:
    text = request.app[SHARE_HTML].format(title=html.escape(title), body=body)
    return web.Response(
        status=status, text=text, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _locked(request: web.Request, share: Share, message: str, status: int) -> web.Response:
    note = f'<p class="bad" role="alert">{html.escape(message)}</p>' if message else ""
    body = f"""<h1>Shared files</h1>
<p>These files are behind a password.</p>{note}
<form method="post" action="/s/{share.id}/" class="unlock">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required autofocus
         autocomplete="current-password">
  <button type="submit">Open</button>
</form>
<section id="owner" hidden aria-labelledby="owner-title"></section>
<script src="/share.js" defer></script>"""
    return _render(request, status, "Shared files — password", body)


def _page(request: web.Request, share: Share, files: Sequence[StoredFile]) -> web.Response:
    shares = request.app[SHARES]
    size = sum(f.size for f in files)
    zip_size = shares.manifest(share, files).layout.size
    previews = share.max_downloads is None  # with a limit, a preview would be a download
    rows = "\n".join(_row(share, f, previews) for f in files) or (
        '<li class="muted">No files yet.</li>'
    )
    left = "" if share.downloads_left is None else f" · {share.downloads_left} downloads left"
    closed = "" if share.closed else " · open for more files"
    body = f"""<h1>Shared files</h1>
<p class="muted">{len(files)} file{"" if len(files) == 1 else "s"} · {_bytes(size)} ·
kept until <time datetime="{share.expires_at.isoformat()}">{share.expires_at:%Y-%m-%d %H:%M}
UTC</time>{left}{closed}</p>
<p><a class="button" id="download-all" href="all.zip" download>Download all
<span class="muted-on-accent">(ZIP, {_bytes(zip_size)})</span></a></p>
<ul id="files">
{rows}
</ul>
<section id="owner" hidden aria-labelledby="owner-title"></section>
<script src="/share.js" defer></script>"""
    return _render(request, 200, "Shared files", body)


def _row(share: Share, record: StoredFile, previews: bool) -> str:
    href = f"f/{record.id}"
    name = html.escape(record.name)
    preview = ""
    if previews and record.content_type in PREVIEWS:
        preview = f'<img src="{href}" alt="" loading="lazy" width="96" height="96">'
    return f"""<li class="file">{preview}<span class="about">
<a class="name" href="{href}" download="{name}">{name}</a>
<span class="muted">{_bytes(record.size)} · {html.escape(record.content_type)}</span></span></li>"""


def _bytes(n: int) -> str:
    """As the upload page says sizes: 1.5 MiB."""
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"
