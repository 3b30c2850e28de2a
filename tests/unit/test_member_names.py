"""Member names: what is allowed extracts inside the folder on POSIX and on Windows."""

from __future__ import annotations

import ntpath
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.zipstream import names
from satchel.zipstream.names import segment_reason, unsafe_reason

_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{k}{n}" for k in ("COM", "LPT") for n in "123456789"
}


def _lands_inside_on_windows(name: str) -> bool:
    base = "C:\\out"
    # What a naive Windows unzipper does: join with '\\' after turning '/' into '\\'.
    joined = ntpath.normpath(ntpath.join(base, name.replace("/", "\\")))
    return joined.startswith(base + "\\")


def _lands_inside_on_posix(name: str) -> bool:
    joined = posixpath.normpath(posixpath.join("/out", name))
    return joined.startswith("/out/")


@given(st.text(alphabet=st.sampled_from(list("ab./\\: \x00\x1f\x7fCONULPT1é")), max_size=14))
def test_an_accepted_name_stays_inside_everywhere(name: str) -> None:
    if unsafe_reason(name) is not None:
        return
    assert _lands_inside_on_posix(name), name
    assert _lands_inside_on_windows(name), name
    for segment in name.split("/"):
        assert segment.split(".")[0].upper() not in _WINDOWS_DEVICES
        assert segment.rstrip(". ") == segment


@pytest.mark.parametrize(
    "name",
    ["..\\..\\x.txt", "a\\b.jpg", "C:x.jpg", "sub/D:\\x", "..", "a/../b", "./a", "/abs",
     "a//b", "tab\there", "nul\x00", "del\x7f", "c1\x85", "CON", "con.txt", "sub/Nul.tar.gz",
     "COM1", "lpt9.log", "COM¹", "aux .txt", "dots...", "space ", "x" * 256, "a/" * 2100],
)  # fmt: skip
def test_names_an_unzipper_could_turn_into_an_escape_or_a_device(name: str) -> None:
    assert unsafe_reason(name) is not None


@pytest.mark.parametrize(
    "name",
    ["IMG_1.jpg", "2024/море.jpg", ".hidden", "a b/c d.png", "CONFIG.txt", "console.log",
     "COM10.txt", "com.jpg", "名前.jpg", "a.b.c"],
)  # fmt: skip
def test_ordinary_names_pass(name: str) -> None:
    assert unsafe_reason(name) is None


@given(st.text(alphabet=st.sampled_from(list("aZ09_-. :\\/\x00CONULPTconul1¹$é")), max_size=12))
def test_the_fast_path_answers_as_the_rules_do(segment: str) -> None:
    assert segment_reason(segment) == names._segment_rules(segment)
