"""The one way async code runs a blocking call (stat, open, read, fsync)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def blocking(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` in the default thread pool, so the event loop never waits on a disk."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def taken(
    undo: Callable[[_T], object], fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """``blocking(fn, …)`` for a call that takes something, a descriptor or a lock, that
    ``undo`` gives back. A caller cancelled while ``fn`` runs in its thread would never
    see the result: here ``undo`` gets it once ``fn`` returns, so nothing is left held."""
    call = asyncio.ensure_future(blocking(fn, *args, **kwargs))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        call.add_done_callback(functools.partial(_give_back, undo))
        raise


def _give_back(undo: Callable[[_T], object], call: asyncio.Future[_T]) -> None:
    if not call.cancelled() and call.exception() is None:
        undo(call.result())
