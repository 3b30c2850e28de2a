"""The files in deploy/: nginx.conf in front of two instances passes an archive, a
resumed download and a tus upload; the systemd unit verifies; compose.yaml and the
Dockerfile name only settings that exist, and agree with nginx.conf."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from satchel.config import Settings
from tests.conftest import DEPLOY, LiveServer, deployed_nginx, require_tool, serving
from tests.helpers import call, eventually, make_folder, random_files

pytestmark = [pytest.mark.interop]

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def balancer(photos: Path, data_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Two instances on one data folder (SQLite), behind deploy/nginx.conf."""
    trust = ("--trusted-proxy", "127.0.0.1")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with (
        serving(photos, data_dir, tmp_path / "a", *trust) as a,
        serving(photos, data_dir, tmp_path / "b", *trust) as b,
        deployed_nginx(tmp_path, [_hostport(a), _hostport(b)]) as url,
    ):
        yield url


def _hostport(server: LiveServer) -> str:
    return server.url.removeprefix("http://")


def test_an_archive_passes_through_whole_and_resumed(balancer: str, photos: Path) -> None:
    files = random_files(["a.jpg", "b.jpg", "deep/c.jpg"], max_size=3_000_000)
    make_folder(photos, "trip", files)
    status, headers, whole = call("GET", f"{balancer}/archive/trip/")
    assert status == 200 and int(headers["Content-Length"]) == len(whole)
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == files
    cut = len(whole) // 3
    status, headers, rest = call(
        "GET",
        f"{balancer}/archive/trip/",
        headers={"Range": f"bytes={cut}-", "If-Range": headers["ETag"]},
    )
    assert status == 206 and whole[:cut] + rest == whole


def test_a_tus_upload_through_it_becomes_a_file(balancer: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    status, headers, _ = call(
        "POST", f"{balancer}/tus/", headers={**TUS, "Upload-Length": str(len(data))}
    )
    assert status == 201
    upload = "/tus/" + headers["Location"].rsplit("/", 1)[1]
    for start in range(0, len(data), 1024 * 1024):  # round-robin: each PATCH anywhere
        chunk = data[start : start + 1024 * 1024]
        status, headers, _ = call(
            "PATCH",
            balancer + upload,
            chunk,
            {
                **TUS,
                "Upload-Offset": str(start),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert status == 204, headers
    file_id = headers["Satchel-File-Id"]
    status, _, got = call("GET", f"{balancer}/files/{file_id}/")
    assert status == 200 and got == data


def test_a_download_resumes_and_the_request_id_is_nginx_s(balancer: str, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024)
    status, _, body = call("POST", f"{balancer}/files/", data)
    assert status == 201
    path = "/" + json.loads(body)["links"]["download"].split("/", 3)[3]
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:700_000])
    curl = require_tool("curl")
    subprocess.run([curl, "-sSf", "-C", "-", "-o", str(partial), balancer + path], check=True)
    assert partial.read_bytes() == data
    status, headers, _ = call("GET", f"{balancer}/check/{path.split('/')[2]}")
    request_id = headers["X-Request-Id"]
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's $request_id
    log = tmp_path / "nginx-access.log"

    async def logged() -> bool:  # nginx writes the line once the response is out
        return request_id in log.read_text()

    asyncio.run(eventually(logged, what="nginx's access-log line"))
    assert call("GET", f"{balancer}/metrics")[0] == 200  # allowed from the loopback


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze checks every directive; only ExecStart's path must exist here."""
    analyze = require_tool("systemd-analyze")
    unit = (DEPLOY / "satchel.service").read_text()
    assert unit.count("ExecStart=/opt/satchel/bin/satchel serve\n") == 1
    local = tmp_path / "satchel.service"
    local.write_text(unit.replace("/opt/satchel/bin/satchel", sys.executable))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(local)], capture_output=True, text=True
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_compose_and_dockerfile_name_real_settings_and_match_nginx() -> None:
    known = {f"SATCHEL_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    named = set(re.findall(r"\bSATCHEL_[A-Z_]+\b", dockerfile))
    for service in compose["services"].values():
        named |= {k for k in service.get("environment", {}) if k.startswith("SATCHEL_")}
    assert named and named <= known, named - known
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstreams = set(re.findall(r"server (satchel-[a-z]+):8080;", nginx))
    assert upstreams == {s for s in compose["services"] if s.startswith("satchel-")}
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in compose["services"]["nginx"]["volumes"]
    subnet = compose["networks"]["satchel"]["ipam"]["config"][0]["subnet"]
    assert compose["services"]["satchel-a"]["environment"]["SATCHEL_TRUSTED_PROXY"] == subnet
