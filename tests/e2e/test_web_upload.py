"""The web page in a real browser (Debian's Chromium driven by Playwright): a 20 MB
upload survives going offline midway; links, delete and plain-words errors work."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, serving

pytestmark = pytest.mark.interop

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
MiB = 1024 * 1024


@pytest.fixture
def server(photos: Path, data_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """Uploads at 4 MiB/s, so going offline lands in the middle of a 20 MB upload."""
    with serving(
        photos, data_dir, tmp_path, "--upload-rate", "4M", "--max-upload-size", "30M"
    ) as live:
        yield live


def test_an_upload_survives_going_offline_midway(
    browser: Any, server: LiveServer, tmp_path: Path
) -> None:
    data = os.urandom(20 * MiB)
    source = tmp_path / "holiday video.bin"
    source.write_bytes(data)
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#files", str(source))

    page.wait_for_function("document.querySelector('#uploads progress')?.value > 6 * 1024 * 1024")
    context.set_offline(True)
    page.wait_for_selector("#uploads .status:has-text('Connection lost')", timeout=15_000)
    assert "offline" in page.inner_text("#network")
    page.wait_for_timeout(1500)
    context.set_offline(False)

    link = page.wait_for_selector("#done a.download", timeout=60_000)
    assert link.inner_text() == "holiday video.bin"
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "web-upload.png"), full_page=True)
    href = link.get_attribute("href")
    with urllib.request.urlopen(href) as resp:
        assert hashlib.sha256(resp.read()).digest() == hashlib.sha256(data).digest()
    assert page.input_value("#done input.check").endswith("/shares/" + href.split("/")[4])

    page.click("#done button.delete")
    page.wait_for_selector("#done .note:has-text('Deleted')")
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(href)
    assert gone.value.code == 404
    gone.value.close()
    context.close()


def test_pause_resume_and_errors_in_plain_words(
    browser: Any, server: LiveServer, tmp_path: Path
) -> None:
    big = tmp_path / "too big.iso"
    with big.open("wb") as f:
        f.truncate(31 * MiB)  # over --max-upload-size: refused before a byte is sent
    small = tmp_path / "notes.txt"
    small.write_bytes(os.urandom(8 * MiB))
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#max-size:has-text('30.0 MiB')")
    page.set_input_files("#files", [str(big), str(small)])
    page.wait_for_selector(".row.failed .status:has-text('larger than the server accepts')")

    page.wait_for_function(
        "[...document.querySelectorAll('#uploads progress')].some(p => p.value > 1024 * 1024)"
    )
    toggle = page.locator("#uploads .row:not(.failed) button.toggle")
    toggle.click()
    page.wait_for_selector("#uploads .status:has-text('Paused')")
    paused_at = page.eval_on_selector("#uploads .row:not(.failed) progress", "p => p.value")
    page.wait_for_timeout(800)
    assert page.eval_on_selector("#uploads .row:not(.failed) progress", "p => p.value") == paused_at
    toggle.click()
    link = page.wait_for_selector("#done a.download", timeout=30_000)
    with urllib.request.urlopen(link.get_attribute("href")) as resp:
        assert resp.read() == small.read_bytes()
    context.close()


def test_finished_uploads_outlive_a_reload_and_delete_with_the_upload_token(
    browser: Any, photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "report.pdf", tmp_path / "photo.jpg"
    first.write_bytes(os.urandom(300_000))
    second.write_bytes(os.urandom(1000))
    with serving(photos, data_dir, tmp_path, "--upload-token", "page-token") as server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url + "/")
        assert page.is_hidden("#demo")  # this server has no demo folder
        page.fill("#token", "page-token")
        page.set_input_files("#files", [str(first), str(second)])
        page.wait_for_selector("#done .row:nth-child(2) .expires:has-text('Kept until')")

        page.reload()
        assert page.input_value("#token") == ""  # not kept unless asked for
        rows = page.locator("#done .row")
        assert rows.count() == 2 and page.is_visible("#done-section")
        page.fill("#token", "page-token")
        row = page.locator("#done .row", has_text="report.pdf")
        report = str(row.locator("a.download").get_attribute("href"))
        row.locator("button.delete").click()
        row.locator(".note:has-text('Deleted')").wait_for()
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(report)
        assert gone.value.code == 404
        gone.value.close()

        page.locator("#done .row", has_text="photo.jpg").locator("button.forget").click()
        page.reload()
        assert page.locator("#done .row").count() == 0 and page.is_hidden("#done-section")
        context.close()
    log = (tmp_path / "server.log").read_text()
    assert "token=" not in log.replace("token=[redacted]", "")  # the page never sent it in a URL


def test_the_demo_button_shows_only_where_the_demo_folder_is(
    browser: Any, photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    (photos / "7kna").mkdir()
    (photos / "7kna" / "a.jpg").write_bytes(b"demo")
    with serving(photos, data_dir, tmp_path) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#demo a", state="visible")
        page.close()


def test_the_delete_link_opened_in_a_browser_deletes_after_asking(
    browser: Any, photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path) as server:
        request = urllib.request.Request(f"{server.url}/files/", data=b"bytes", method="POST")
        with urllib.request.urlopen(request) as resp:
            stored = json.load(resp)
        page = browser.new_page()
        page.goto(stored["links"]["delete"])
        assert "Delete “" in page.inner_text("h1")
        with urllib.request.urlopen(stored["links"]["download"]) as resp:
            assert resp.read() == b"bytes"  # opening the link deleted nothing
        page.click("button[type=submit]")
        page.wait_for_selector("#result:has-text('Deleted')")
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(stored["links"]["download"])
        assert gone.value.code == 404
        gone.value.close()
        page.close()
