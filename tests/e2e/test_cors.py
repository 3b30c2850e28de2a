"""CORS in a real browser: a page of another origin uploads with tus-js-client (its
browser build, from npm) to Satchel and downloads the file back; a page of an origin
not listed may download (``--cors-origin *``) but not upload. Preflights by hand too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, free_port, serving
from tests.helpers import call

pytestmark = pytest.mark.interop

TUS_BUNDLE = (
    Path(__file__).resolve().parents[1] / "interop/js/node_modules/tus-js-client/dist/tus.min.js"
)

# Upload 1 MiB with tus-js-client in chunks, then fetch the download link the last
# PATCH named (Satchel-Download, readable only if exposed) and compare SHA-256s.
UPLOAD_AND_FETCH = """
async ([endpoint, size]) => {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 255;
  const hex = async (buf) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", buf)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
  let download = null;
  try {
    await new Promise((resolve, reject) => {
      const upload = new tus.Upload(new Blob([bytes]), {
        endpoint, chunkSize: 256 * 1024, retryDelays: [],
        metadata: { filename: "from another origin.bin" },
        onAfterResponse: (req, res) => {
          download = res.getHeader("Satchel-Download") || download;
        },
        onError: reject, onSuccess: resolve,
      });
      upload.start();
    });
  } catch (error) {
    return { uploaded: false, error: String(error) };
  }
  const answer = await fetch(download);
  const same = (await hex(bytes)) === (await hex(await answer.arrayBuffer()));
  return { uploaded: true, download, status: answer.status, same };
}
"""

FETCH = """
async (url) => {
  try {
    const answer = await fetch(url);
    return { status: answer.status, size: (await answer.arrayBuffer()).byteLength };
  } catch (error) {
    return { error: String(error) };
  }
}
"""


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two origins serving the same page with tus-js-client: (listed, not listed)."""
    if not TUS_BUNDLE.exists():
        pytest.fail("tus-js-client is not installed: npm ci --prefix tests/interop/js")
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(TUS_BUNDLE, root / "tus.min.js")
    (root / "index.html").write_text('<!doctype html><script src="tus.min.js"></script>\n')
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for port in ports
    ]
    try:
        for port in ports:  # until each answers
            for _ in range(100):
                try:
                    if call("GET", f"http://127.0.0.1:{port}/")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        for server in servers:
            server.terminate()
            server.wait()


@pytest.fixture
def satchel(
    photos: Path, data_dir: Path, tmp_path: Path, pages: tuple[str, str]
) -> Iterator[LiveServer]:
    listed, _ = pages
    with serving(photos, data_dir, tmp_path, "--cors-origin", listed, "--cors-origin", "*") as live:
        yield live


def test_a_listed_origin_uploads_with_tus_js_client_and_downloads(
    browser: Any,
    satchel: LiveServer,
    pages: tuple[str, str],
) -> None:
    listed, other = pages
    page = browser.new_page()
    page.goto(listed + "/")
    result = page.evaluate(UPLOAD_AND_FETCH, [satchel.url + "/tus/", 1024 * 1024])
    assert result["uploaded"], result
    assert result["status"] == 200 and result["same"] and result["download"].startswith(satchel.url)
    # Another origin: the download is readable (*: downloads only), an upload is refused.
    page = browser.new_page()
    page.goto(other + "/")
    fetched = page.evaluate(FETCH, result["download"])
    assert fetched == {"status": 200, "size": 1024 * 1024}
    refused = page.evaluate(UPLOAD_AND_FETCH, [satchel.url + "/tus/", 1000])
    assert not refused["uploaded"], refused


def test_preflights_answer_listed_origins_and_refuse_others_clearly(
    satchel: LiveServer, pages: tuple[str, str]
) -> None:
    listed, other = pages
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "tus-resumable, upload-length, authorization",
    }
    for path in ("/tus/", "/files/", "/archives/"):
        status, headers, _ = call("OPTIONS", satchel.url + path, None, {"Origin": listed, **ask})
        assert status == 204, path
        assert headers["Access-Control-Allow-Origin"] == listed
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == ask["Access-Control-Request-Headers"]
        status, headers, body = call("OPTIONS", satchel.url + path, None, {"Origin": other, **ask})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        assert other.encode() in body
    # tus discovery without Origin is still tus's own answer
    status, headers, _ = call("OPTIONS", satchel.url + "/tus/")
    assert status == 204 and "Tus-Version" in headers
    # a plain answer to an allowed origin names it and exposes what tus clients read
    status, headers, _ = call("GET", satchel.url + "/healthz", None, {"Origin": listed})
    assert headers["Access-Control-Allow-Origin"] == listed and "Origin" in headers["Vary"]
    assert "Upload-Offset" in headers["Access-Control-Expose-Headers"]


def test_without_cors_origin_no_cross_origin_headers(live_server: LiveServer) -> None:
    status, headers, _ = call("GET", live_server.url + "/healthz", None, {"Origin": "http://x.y"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    ask = {"Origin": "http://x.y", "Access-Control-Request-Method": "POST"}
    assert call("OPTIONS", live_server.url + "/files/", None, ask)[0] == 405
