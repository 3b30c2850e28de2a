"""The one way async code runs a blocking call (stat, open, read, fsync)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def blocking(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` in the default thread pool, so the event loop never waits on a disk."""
    return await asyncio.to_thread(fn, *args, **kwargs)
