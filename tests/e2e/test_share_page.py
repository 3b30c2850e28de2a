"""Shares in a real browser (Debian's Chromium driven by Playwright): files dropped on
the upload page make one share; its QR code says its link (read back by zbarimg); the
share page asks for the password, lists the files and downloads them all as one ZIP;
the owner link manages the share. Screenshots land in test-output/."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from satchel.demo import png
from tests.conftest import LiveServer, require_tool, serving

pytestmark = pytest.mark.interop

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture
def server(photos: Path, data_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    with serving(photos, data_dir, tmp_path) as live:
        yield live


def test_dropped_files_make_one_share_with_a_page_a_zip_and_a_qr_code(
    browser: Any, server: LiveServer, tmp_path: Path
) -> None:
    zbarimg = require_tool("zbarimg")
    files = {"beach.png": png(320, 240, 3), "notes.txt": b"pack sunscreen\n" * 500}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#share-days", "3")
    page.fill("#share-password", "open sesame")
    page.set_input_files("#files", [str(tmp_path / name) for name in files])
    page.wait_for_selector("#done .row:nth-child(2) .expires:has-text('Kept until')")
    share_url = page.input_value("#shares .row.current input.url")
    owner_url = page.input_value("#shares .row.current input.owner")
    assert share_url.startswith(server.url + "/s/") and owner_url.startswith(share_url + "#owner=")
    assert page.input_value("#share-password") == ""  # not kept in the page
    page.wait_for_function("document.querySelector('#shares img.qr').naturalWidth > 0")
    OUTPUT.mkdir(exist_ok=True)
    page.locator("#shares img.qr").screenshot(path=str(tmp_path / "qr.png"))
    page.screenshot(path=str(OUTPUT / "upload-share.png"), full_page=True)
    read = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(tmp_path / "qr.png")], capture_output=True, text=True
    )
    assert read.stdout.strip() == share_url, read.stderr

    page.reload()  # the share is kept in this browser
    assert page.input_value("#shares .row.current input.url") == share_url

    # someone with the link: the password first, then the files and "Download all"
    visitor = browser.new_context()
    shared = visitor.new_page()
    shared.goto(share_url)
    shared.fill("#password", "wrong")
    shared.click("form.unlock button")
    shared.wait_for_selector("p.bad:has-text('not this share')")
    shared.fill("#password", "open sesame")
    shared.click("form.unlock button")
    shared.wait_for_selector("#download-all")
    shared.wait_for_function("document.querySelector('#files img').naturalWidth === 320")
    names = shared.locator("#files a.name").all_inner_texts()
    assert sorted(names) == sorted(files)
    shared.screenshot(path=str(OUTPUT / "share-page.png"), full_page=True)
    with shared.expect_download() as download:
        shared.click("#download-all")
    archive = Path(download.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert {info.filename: zf.read(info) for info in zf.infolist()} == files
    visitor.close()

    # the owner link manages it: closed, it takes no more files
    page.goto(owner_url)  # locked, but the owner token opens it as the password would
    page.wait_for_selector("#owner form")
    assert sorted(page.locator("#files a.name").all_inner_texts()) == sorted(files)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#owner button:has-text('Close to new files')")
    page.wait_for_selector("#owner button:has-text('Closed to new files')")
    assert "open for more files" not in page.inner_text("body")
    page.click("#owner button.danger")
    page.wait_for_selector("body:has-text('Deleted')")
    assert context.request.get(share_url).status == 404
    context.close()
