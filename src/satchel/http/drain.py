"""The drain after SIGTERM: no new connections (aiohttp closes the listening socket),
/readyz answers 503, and the transfers in progress have --drain-timeout to finish.
Those still running then are cancelled, and get a few seconds to close as a cut
connection does: a tus PATCH keeps every byte it received, recorded at its offset."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger("satchel")

GRACE = 5.0  # seconds a cancelled transfer has to keep what it has


class Drain:
    """The tasks of the transfers in progress, and the wait for them."""

    def __init__(self) -> None:
        self.draining = False
        self._running: set[asyncio.Task[object]] = set()
        self._idle: asyncio.Event | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around one transfer, in its handler's task."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - handlers always run in a task
            raise RuntimeError("a transfer runs in a task")
        self._running.add(task)
        try:
            yield
        finally:
            self._running.discard(task)
            if not self._running and self._idle is not None:
                self._idle.set()

    async def wait(self, timeout: float) -> None:
        """Wait until every transfer has ended, or ``timeout`` s; then cut the rest."""
        self.draining = True
        loop = asyncio.get_running_loop()
        began = loop.time()
        log.info(
            "Draining: new connections are refused; %d transfers in progress, "
            "waiting up to %g s for them",
            len(self._running),
            timeout,
        )
        if self._running:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
        cut = list(self._running)
        if not cut:
            log.info("Drained: every transfer finished in %.1f s", loop.time() - began)
            return
        log.warning("Drain timeout: cutting %d transfers still in progress", len(cut))
        for task in cut:
            task.cancel()
        await asyncio.wait(cut, timeout=GRACE)
