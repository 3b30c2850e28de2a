"""schemathesis against /openapi.json of a live server: no 5xx, responses match the schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, LiveServer

pytestmark = pytest.mark.interop

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
])  # fmt: skip


def test_schemathesis_finds_nothing(live_server: LiveServer, photos: Path, tmp_path: Path) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if binary is None:
        if IN_CI:
            pytest.fail("schemathesis is not installed (it is in the dev extra)")
        pytest.skip("schemathesis is not installed")
    (photos / "7kna").mkdir()
    (photos / "7kna" / "1.jpg").write_bytes(b"\xff\xd8 a photo")
    result = subprocess.run(
        [binary, "run", f"{live_server.url}/openapi.json", "--checks", CHECKS,
         "--max-examples", "25", "--request-timeout", "10", "--generation-deterministic",
         "--no-color"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
             "PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Error handling request" not in live_server.log.read_text()
