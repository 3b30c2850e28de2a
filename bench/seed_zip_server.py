"""Baseline: the seeds' approach — an aiohttp handler piping `zip -r - .` (deflate).

Rebuilt as the seed documents 000–002 describe it (100 KiB reads, chunked body, no
Content-Length), minus their stderr deadlock (`-q`, stderr to DEVNULL) so the
baseline can finish on big folders. Usage: seed_zip_server.py PORT PHOTOS [ZIP_FLAGS]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

CHUNK = 100 * 1024


async def archive(request: web.Request) -> web.StreamResponse:
    folder = Path(request.app["photos"]) / request.match_info["folder"]
    if not folder.is_dir():
        raise web.HTTPNotFound(text="Архив не существует или был удален")
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": 'attachment; filename="archive.zip"',
        }
    )
    await response.prepare(request)
    flags = request.app["zip_flags"]
    process = await asyncio.create_subprocess_exec(
        "zip", *flags, "-q", "-r", "-", ".", cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        while chunk := await process.stdout.read(CHUNK):
            await response.write(chunk)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    return response


def main() -> None:
    app = web.Application()
    app["photos"] = sys.argv[2]
    app["zip_flags"] = sys.argv[3].split() if len(sys.argv) > 3 else []
    app.router.add_get("/archive/{folder}/", archive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
