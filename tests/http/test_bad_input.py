"""Every class of bad input a client can send gets a catalogued 4xx, never a 500."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .conftest import ClientFactory

AUTH = {"Authorization": "Bearer t"}
# Numbers int() takes or chokes on that no HTTP grammar allows.
BAD_NUMBERS = ["²", "١", "1_0", "+5", "-1", "1e3", "0x1f", "9" * 5000, str(2**63), "1.5"]


def stored_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "files").rglob("*") if p.is_file()]


async def _json_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status and body["error"] and body["message"]
    return body


async def _uploaded(client: TestClient[Any, Any], data: bytes = b"x" * 3000) -> str:
    resp = await client.post("/files/", data=data, headers=AUTH)
    assert resp.status == 201
    return str((await resp.json())["id"])


@pytest.mark.parametrize("value", BAD_NUMBERS)
async def test_every_numeric_header_and_query_refuses_a_bad_number_by_name(
    make_app_client: ClientFactory, data_dir: Path, value: str
) -> None:
    client = await make_app_client(upload_token=("t",))
    file_id = await _uploaded(client)
    for name in ("Max-Downloads", "Max-Days"):
        resp = await client.post("/files/", data=b"x", headers={**AUTH, name: value})
        assert name in (await _json_error(resp, 400))["message"]
    for name in ("max_downloads", "max_days"):
        resp = await client.post("/files/", data=b"x", params={name: value}, headers=AUTH)
        assert "Max-" in (await _json_error(resp, 400))["message"]
    resp = await client.get(f"/files/{file_id}/", params={"kbps": value})
    assert "kbps" in (await _json_error(resp, 400))["message"]
    headers = {**AUTH, "Tus-Resumable": "1.0.0", "Upload-Length": value}
    resp = await client.post("/tus/", headers=headers)
    assert "Upload-Length" in (await _json_error(resp, 400))["message"]
    assert len(stored_files(data_dir)) == 1  # only the first upload


@pytest.mark.parametrize("spec", ["9" * 5000 + "-", "0-" + "9" * 5000, "-" + "9" * 5000,
                                  "٣-٤", "0-1," * 2000 + "5-"])  # fmt: skip
async def test_a_range_of_any_length_is_answered(make_app_client: ClientFactory, spec: str) -> None:
    client = await make_app_client(upload_token=("t",))
    file_id = await _uploaded(client)
    resp = await client.get(f"/files/{file_id}/", headers={"Range": f"bytes={spec}"})
    assert resp.status in (200, 206, 416)
    if resp.status != 416:
        assert len(await resp.read()) <= 3000 + 400


@pytest.mark.parametrize(
    ("coding", "body"),
    [("gzip", b"not gzip"), ("deflate", b"not deflate"),
     ("gzip", gzip.compress(os.urandom(100_000))[:-300]),  # cut short
     ("deflate", zlib.compress(os.urandom(200_000))[:5000] + b"\xff" * 5000)],
)  # fmt: skip
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_whose_content_coding_is_broken_is_a_400(
    make_app_client: ClientFactory, data_dir: Path, coding: str, body: bytes, chunked: bool
) -> None:
    client = await make_app_client()
    headers = {"Content-Encoding": coding}
    data: Any = body
    if chunked:

        async def chunks() -> Any:
            yield body

        data = chunks()
    resp = await client.post("/files/", data=data, headers=headers)
    await _json_error(resp, 400)
    assert stored_files(data_dir) == []


@pytest.mark.parametrize("cut", [20, 60, 120, -30, -8, -5])
async def test_a_multipart_body_cut_short_is_a_400_and_keeps_no_part(
    make_app_client: ClientFactory, data_dir: Path, cut: int
) -> None:
    client = await make_app_client()
    whole = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        + b"first file\r\n"
        + b'--XX\r\nContent-Disposition: form-data; name="file"; filename="b.txt"\r\n\r\n'
        + b"second file\r\n--XX--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=XX"}
    resp = await client.post("/files/", data=whole[:cut], headers=headers)
    await _json_error(resp, 400)
    assert stored_files(data_dir) == []
    resp = await client.post("/files/", data=whole, headers=headers)
    assert resp.status == 201 and len(stored_files(data_dir)) == 2


@pytest.mark.parametrize("parent", ["plain", "g/file.jpg", "g/sub/file.jpg"])
async def test_put_below_a_file_is_a_409(
    make_app_client: ClientFactory, photos: Path, parent: str
) -> None:
    client = await make_app_client(upload_token=("t",))
    (photos / "g" / "sub").mkdir(parents=True)
    for name in ("plain", "g/file.jpg", "g/sub/file.jpg"):
        (photos / name).write_bytes(b"keep")
    resp = await client.put(f"/archive/{parent}/x.jpg", data=b"x", headers=AUTH)
    assert parent in (await _json_error(resp, 409))["message"]
    resp = await client.delete(f"/archive/{parent}/x.jpg", headers=AUTH)
    await _json_error(resp, 409)
    for name in ("plain", "g/file.jpg", "g/sub/file.jpg"):
        assert (photos / name).read_bytes() == b"keep"


async def test_put_through_a_symlink_creates_nothing_outside(
    make_app_client: ClientFactory, photos: Path, tmp_path: Path
) -> None:
    client = await make_app_client(upload_token=("t",))
    outside = tmp_path / "outside"
    outside.mkdir()
    (photos / "g").mkdir()
    (photos / "g" / "out").symlink_to(outside)
    (photos / "h").symlink_to(outside)
    for path in ("g/out/sub/deeper/x.jpg", "g/out/x.jpg", "h/sub/x.jpg", "g/out"):
        resp = await client.put(f"/archive/{path}", data=b"x", headers=AUTH)
        await _json_error(resp, 409)
    assert list(outside.iterdir()) == []


async def test_a_folder_keeps_unsafe_names_out_of_its_archive(
    make_app_client: ClientFactory, photos: Path
) -> None:
    """Files put there by FTP: names an unzipper could turn into an escape are skipped."""
    client = await make_app_client()
    folder = photos / "ftp"
    (folder / "CON").mkdir(parents=True)
    for name in ("ok.jpg", "..\\..\\x.txt", "CON.jpg", "tab\there.jpg", "dot.", "CON/in.jpg"):
        (folder / name).write_bytes(b"data")
    resp = await client.get("/archive/ftp/")
    assert resp.status == 200
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
        assert zf.namelist() == ["ok.jpg"]
