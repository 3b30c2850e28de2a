"""Pure ZIP engine: a manifest in, an exact byte layout out. No IO here."""

from satchel.zipstream.layout import Layout, Limits, Member, Part, Piece, first_small, small_first

__all__ = [
    "Layout",
    "Limits",
    "Member",
    "Part",
    "Piece",
    "first_small",
    "render",
    "small_first",
]


def render(layout: Layout, crcs: list[int], data: list[bytes]) -> bytes:
    """The whole archive in memory — for tests and tiny archives only."""
    out = bytearray()
    for i in range(len(layout)):
        out += layout.local_header(i, crcs[i])
        out += data[i]
    out += layout.central(0, layout.central_size, crcs)
    out += layout.end_records()
    return bytes(out)
